"""Continuous deployment commands (`kaizen ci ...`): what the GitHub Actions workflows run."""
