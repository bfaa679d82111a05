"""Offline drift tooling: the drift report over captured data, and baseline export for Model Monitor."""
