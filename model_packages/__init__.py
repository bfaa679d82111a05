"""Kaizen model packages: package format, serving runtime, images and the `kaizen` CLI."""

__version__ = "0.1.0"
