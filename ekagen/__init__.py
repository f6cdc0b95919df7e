"""ekagen: an open, reproducible EKAGen (CVPR 2024) radiology report generator."""

__version__ = "0.1.0"
