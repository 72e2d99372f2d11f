"""Panel/HoloViews components for the apps (the layer above ``sepmodels``)."""
