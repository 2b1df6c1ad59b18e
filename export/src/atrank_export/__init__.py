"""atrank exporter: train ATRank and write model packages."""

__version__ = "0.1.0"
