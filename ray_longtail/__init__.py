"""ray_longtail: find and recommend the long tail of a catalog with transformer encoders on Ray."""

__version__ = "0.1.0"
