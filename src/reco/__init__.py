"""reco: a recommendation system you can run on a laptop and grow into a cluster."""

__version__ = "0.1.0"
