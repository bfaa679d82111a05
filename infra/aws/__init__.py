"""AWS target: ECR, SageMaker endpoint with autoscaling and data capture, CloudWatch, smoke test."""
