"""Accord: data-sharing agreement and consent governance."""

__version__ = "0.1.0"
