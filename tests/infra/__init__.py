"""Tests of the cloud stacks (Pulumi mocks), config, policy pack and boto3 code."""
