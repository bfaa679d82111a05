"""Kaizen infrastructure: Pulumi ComponentResources per target (aws, azure, gcp, local)."""
