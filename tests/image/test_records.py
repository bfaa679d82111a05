"""Image records and digest references (model_packages/image/records.py, refs.py): no Docker engine
needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_packages.image import records, refs
from model_packages.image.registry import image_record


def test_records_replace_and_refuse_tags(tmp_path: Path) -> None:
    path = tmp_path / "kaizen-images.json"
    labels = {"io.kaizen.model.name": "m", "io.kaizen.model.version": "1.0.0+b1"}

    def pushed(digit: str, at: str = "2026-01-01T00:00:00Z") -> records.ImageRecord:
        return image_record(labels, registry="r:5000", repository="kaizen/m", tag="1.0.0_b1",
                            digest="sha256:" + digit * 64, pushed_at=at)

    records.record_image(pushed("a"), path)
    records.record_image(pushed("b"), path)
    data = json.loads(path.read_text())
    assert len(data["images"]) == 1 and data["images"][0]["reference"] == "r:5000/kaizen/m@sha256:" + "b" * 64
    assert records.find_image("m", "1.0.0+b1", path=path) == pushed("b")
    with pytest.raises(records.RecordsError, match="referenced by tag"):
        records.ImageRecord.parse({**pushed("a").to_json(), "reference": "r:5000/kaizen/m:1.0.0"})
    with pytest.raises(records.RecordsError, match="not registry/repository@digest"):
        records.ImageRecord.parse({**pushed("a").to_json(), "digest": "sha256:" + "c" * 64})
    with pytest.raises(records.NoImageRecorded):
        records.find_image("other", path=path)


def test_one_parser_of_digest_references() -> None:
    """The stack config, the policy pack, the trainer config, `kaizen ci deploy` and the records agree."""
    from infra.common import config
    from infra.policy import guardrails
    from model_packages.ci import stacks

    good = "europe-west4-docker.pkg.dev/p/kaizen/iris@sha256:" + "0" * 64
    bad = ["r:5000/kaizen/m:1.0", "r:5000/kaizen/m:1.0@sha256:" + "0" * 64, "r:5000/Kaizen/m@sha256:" + "0" * 64,
           "r:5000/kaizen/m@sha256:" + "A" * 64, "r:5000/kaizen/m@sha256:" + "0" * 63]
    assert refs.ImageRef.parse(good).path == "p/kaizen/iris" and config.ImageRef is refs.ImageRef
    assert stacks.check_digest_ref(good) == good
    for ref in bad:
        assert not refs.is_digest_ref(ref), ref
        with pytest.raises(ValueError):
            refs.ImageRef.parse(ref)
        with pytest.raises(stacks.StackError):
            stacks.check_digest_ref(ref)
    assert guardrails.is_digest_ref is refs.is_digest_ref
    assert refs.image_repository("m") == "kaizen/m" and refs.tag_for("1.0.0+b1") == "1.0.0_b1"
