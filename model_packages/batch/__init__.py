"""Batch scoring: files in, predictions and rejects out, with the server's validation and model."""
