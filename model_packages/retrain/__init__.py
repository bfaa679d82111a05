"""Retraining: a content-versioned pipeline of plain Python steps and a statistical promotion gate."""
