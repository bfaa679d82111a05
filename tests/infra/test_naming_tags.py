"""Naming helpers and tag values."""

from __future__ import annotations

import re

from infra.common.config import parse_config
from infra.common.naming import alnum_name, physical_name
from infra.common.tags import gcp_labels, stack_tags

from .conftest import DIGEST, load_stack_config


def test_physical_names_fit_and_stay_unique() -> None:
    assert physical_name("kaizen", "iris", "aws-dev") == "kaizen-iris-aws-dev"
    long_a = physical_name("kaizen", "a-very-long-model-name-indeed", "aws-pr-1234567", max_len=32)
    long_b = physical_name("kaizen", "a-very-long-model-name-indeed", "aws-pr-1234568", max_len=32)
    assert len(long_a) <= 32 and len(long_b) <= 32 and long_a != long_b
    assert physical_name("Kaizen", "Iris_Model", "GCP.dev") == "kaizen-iris-model-gcp-dev"
    assert physical_name("1st", "x")[0].isalpha()
    assert alnum_name("kz", "iris", "azure-prod", max_len=24) == "kzirisazureprod"
    assert re.fullmatch(r"[a-z0-9]{1,24}", alnum_name("kz", "x" * 40, "azure-pr-99", max_len=24))


def test_stack_tags_and_gcp_labels() -> None:
    cfg = parse_config(load_stack_config("gcp-dev"), "gcp-dev")
    tags = stack_tags(cfg, "kaizen", "gcp-dev")
    assert tags == {
        "kaizen-project": "kaizen",
        "kaizen-stack": "gcp-dev",
        "owner": "ml-platform",
        "cost-center": "ml-0001",
        "kaizen-model": "iris",
        "kaizen-model-version": "1.0.0",
        "kaizen-image-digest": DIGEST,
    }
    labels = gcp_labels(tags)
    assert all(re.fullmatch(r"[a-z0-9_-]{0,63}", v) for v in labels.values())
    assert labels["kaizen-model-version"] == "1-0-0"
    assert labels["kaizen-image-digest"].startswith("sha256-") and len(labels["kaizen-image-digest"]) == 63
