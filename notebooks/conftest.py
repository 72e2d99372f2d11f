"""The notebooks run in CI (pytest --nbmake) at their small size: tiny models, few steps."""

import os

os.environ.setdefault("SEPMODELS_SMALL", "1")
