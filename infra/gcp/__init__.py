"""GCP target: Artifact Registry, Cloud Run v2 service, Cloud Monitoring."""
