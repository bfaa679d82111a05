"""Stack config validation: one clear message naming the key, before any resource exists."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.common.config import ConfigError, ImageRef, infer_stack_kind, parse_config
from model_packages.image import records
from model_packages.image.refs import image_repository, tag_for
from model_packages.image.registry import image_record

from .conftest import DIGEST, STACKS, RecordingMocks, load_stack_config, run_program


def _cfg(stack: str = "aws-dev") -> dict[str, Any]:
    return copy.deepcopy(load_stack_config(stack))


def _error(raw: dict[str, Any], stack: str = "aws-dev") -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, stack)
    return str(exc.value)


CLOUD_STACK_FILES = [
    p
    for cloud in ("aws", "azure", "gcp")
    for p in [*sorted(STACKS.glob(f"Pulumi.{cloud}-*.yaml")), STACKS / "templates" / f"Pulumi.pr.{cloud}.yaml"]
]


def test_each_cloud_has_dev_staging_prod_platform_and_pr_template() -> None:
    names = {p.name for p in CLOUD_STACK_FILES}
    for cloud in ("aws", "azure", "gcp"):
        for kind in ("dev", "staging", "prod", "platform"):
            assert f"Pulumi.{cloud}-{kind}.yaml" in names
        assert (STACKS / "templates" / f"Pulumi.pr.{cloud}.yaml").is_file()


@pytest.mark.parametrize("path", CLOUD_STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_validates(path: Path) -> None:
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    if path.parent.name == "templates":
        stack = f"{stack.split('.')[1]}-pr-1"
    import yaml

    raw = {k.split(":", 1)[1]: v for k, v in yaml.safe_load(path.read_text())["config"].items()}
    cfg = parse_config(raw, stack)
    assert cfg.stack_kind == infer_stack_kind(stack)


def test_image_by_tag_is_refused_naming_the_key() -> None:
    raw = _cfg()
    raw["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris:1.0.0"
    msg = _error(raw)
    assert "kaizen:image" in msg and "referenced by tag" in msg


@pytest.mark.parametrize(
    "image",
    [
        "kaizen/iris@sha256:abc",  # short digest
        f"registry.example.com/kaizen/iris:1.0@{DIGEST}",  # tag and digest: ambiguous
        f"Registry.example.com/Kaizen/iris@{DIGEST}",  # upper case
        f"iris@{DIGEST}",  # no registry
    ],
)
def test_malformed_images_are_refused(image: str) -> None:
    raw = _cfg()
    raw["image"] = image
    assert "kaizen:image" in _error(raw)


def test_image_ref_parses() -> None:
    ref = ImageRef.parse(f"europe-west4-docker.pkg.dev/p/kaizen/kaizen/iris@{DIGEST}")
    assert ref.registry == "europe-west4-docker.pkg.dev"
    assert ref.repository == "europe-west4-docker.pkg.dev/p/kaizen/kaizen/iris"
    assert ref.digest == DIGEST and ref.short_digest == "0" * 12


def test_unknown_target() -> None:
    raw = _cfg()
    raw["target"] = "oracle"
    msg = _error(raw)
    assert "kaizen:target" in msg and "'oracle'" in msg


def test_wrong_type_names_the_nested_key() -> None:
    raw = _cfg()
    raw["aws"]["maxInstances"] = "many"
    msg = _error(raw)
    assert "kaizen:aws.maxInstances" in msg and "'many'" in msg


def test_missing_value_names_the_key() -> None:
    raw = _cfg()
    del raw["owner"]
    assert "kaizen:owner: missing value" in _error(raw)
    raw = _cfg()
    del raw["aws"]["region"]
    assert "kaizen:aws.region: missing value" in _error(raw)


def test_unknown_key_is_refused() -> None:
    raw = _cfg()
    raw["aws"]["minInstance"] = 1
    assert "kaizen:aws.minInstance: unknown key" in _error(raw)
    raw = _cfg()
    raw["imgae"] = "x"
    assert "kaizen:imgae: unknown key" in _error(raw)


def test_missing_target_section_and_foreign_section() -> None:
    raw = _cfg()
    del raw["aws"]
    assert "kaizen:aws: target is 'aws' but kaizen:aws is missing" in _error(raw)
    raw = _cfg()
    raw["gcp"] = _cfg("gcp-dev")["gcp"]
    assert "kaizen:gcp: set, but the target is 'aws'" in _error(raw)


def test_bounds_and_notifications() -> None:
    raw = _cfg()
    raw["aws"]["minInstances"] = 5
    assert "minInstances (5) is larger than maxInstances" in _error(raw)
    raw = _cfg()
    raw["aws"]["notifications"] = {"emails": []}
    assert "kaizen:aws.notifications" in _error(raw)
    raw = _cfg()
    raw["aws"]["logRetentionDays"] = 31
    assert "logRetentionDays" in _error(raw)


def test_preview_stacks_cannot_be_protected_and_need_a_platform_stack() -> None:
    raw = _cfg("aws-pr-7")
    raw["deletionProtection"] = True
    assert "kaizen:deletionProtection" in _error(raw, "aws-pr-7")
    raw = _cfg("aws-pr-7")
    del raw["platformStack"]
    assert "kaizen:platformStack" in _error(raw, "aws-pr-7")


def test_gcp_public_access_needs_explicit_config() -> None:
    raw = _cfg("gcp-dev")
    raw["gcp"]["invokers"] = ["allUsers"]
    assert "allUsers" in _error(raw, "gcp-dev")
    raw["gcp"]["public"] = True
    assert parse_config(raw, "gcp-dev").gcp is not None


def test_canary_needs_a_stable_revision() -> None:
    raw = _cfg("gcp-dev")
    raw["gcp"]["canaryPercent"] = 10
    assert "stableRevision" in _error(raw, "gcp-dev")


def test_stack_kind_inference() -> None:
    assert infer_stack_kind("aws-pr-12") == "preview"
    assert infer_stack_kind("pr-3") == "preview"
    assert infer_stack_kind("gcp-platform") == "platform"
    assert infer_stack_kind("azure-prod") == "prod"
    assert infer_stack_kind("sandbox") is None
    raw = _cfg()
    assert "kaizen:stackKind" in _error(raw, "sandbox")


def test_image_falls_back_to_what_kaizen_push_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _cfg()
    del raw["image"]
    name, version = raw["model"]["name"], raw["model"]["version"]
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    path = tmp_path / "kaizen-images.json"
    monkeypatch.setenv("KAIZEN_IMAGES_FILE", str(path))

    def push(version: str, digit: str, pushed_at: str) -> str:
        """Record the entry `kaizen push` records (registry.image_record, from the image's labels)."""
        labels = {"io.kaizen.model.name": name, "io.kaizen.model.version": version,
                  "io.kaizen.model.artifact-sha256": "c" * 64, "org.opencontainers.image.created": pushed_at}
        record = image_record(labels, registry=host, repository=image_repository(name), tag=tag_for(version),
                              digest=f"sha256:{digit * 64}", image_id=f"sha256:{digit * 64}",
                              built_at=pushed_at, pushed_at=pushed_at)
        records.record_image(record, path)
        return record.reference

    wanted = push(version, "a", "2026-01-01T00:00:00Z")
    # Newer, and sorted after it in the file (the old reader took the last entry of the model).
    push("99.0.0", "b", "2026-06-01T00:00:00Z")
    assert [e["version"] for e in json.loads(path.read_text())["images"]] == [version, "99.0.0"]
    assert parse_config(raw, "aws-dev").image == wanted

    raw["model"]["version"] = "0.0.1"  # nothing pushed for it: the image key is then missing
    assert "kaizen:image" in _error(raw)

    path.write_text(json.dumps({"version": 1, "images": [{"ref": f"{host}/kaizen/{name}@sha256:{'d' * 64}"}]}))
    assert "images[0] is not a valid image record" in _error(raw)  # a shape `kaizen push` never writes

    path.write_text("{not json")
    assert "kaizen-images.json is not valid JSON" in _error(raw)


def test_program_stops_before_declaring_any_resource() -> None:
    raw = _cfg()
    raw["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris:latest"
    with pytest.raises(ConfigError, match="kaizen:image"):
        run_program("aws-dev", raw)
    from . import conftest

    assert isinstance(conftest.LAST_MOCKS, RecordingMocks)
    assert conftest.LAST_MOCKS.resources == []


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev", "azure-dev"])
def test_the_fixed_psi_drift_threshold_is_refused_naming_its_replacement(stack: str) -> None:
    raw = _cfg(stack)
    cloud = stack.split("-")[0]
    raw[cloud] = {**raw[cloud], "alerts": {**raw[cloud].get("alerts", {}), "driftScore": 0.25}}
    msg = _error(raw, stack)
    assert f"kaizen:{cloud}.alerts" in msg and "driftScore was removed" in msg and "drift.falseAlarmDays" in msg


def test_drift_settings_reach_the_runtime_environment() -> None:
    raw = _cfg("aws-dev")
    raw["aws"] = {**raw["aws"], "drift": {"falseAlarmDays": 14, "windowSeconds": 1800}}
    cfg = parse_config(raw, "aws-dev")
    assert cfg.aws is not None
    env = cfg.aws.drift.as_env()
    assert env["KAIZEN_DRIFT_FALSE_ALARM_DAYS"] == "14" and env["KAIZEN_DRIFT_WINDOW_SECONDS"] == "1800"
    raw["aws"]["drift"] = {"falseAlarmDays": 0.01, "windowSeconds": 3600}
    assert "falseAlarmDays" in _error(raw)
