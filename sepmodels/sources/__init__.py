"""Source models that are fitted to solo clips rather than trained by gradient: the harmonic priors
(:mod:`sepmodels.sources.harmonic`) and the note follower they are built on (:mod:`sepmodels.sources.track`)."""
