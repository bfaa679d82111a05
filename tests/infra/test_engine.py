"""With the real Pulumi engine (scripts/install-pulumi.sh): the stack program's config validation
and the CrossGuard pack under `pulumi preview --policy-pack infra/policy`. No cloud provider plugin
can be downloaded here, so these previews stop before any cloud resource is planned."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.pulumi


def _pulumi() -> str | None:
    found = shutil.which("pulumi")
    if found:
        return found
    cached = sorted(glob.glob(os.path.expanduser("~/.cache/kaizen/pulumi/*/bin/pulumi")))
    return cached[-1] if cached else None


PULUMI = _pulumi()
needs_engine = pytest.mark.skipif(
    PULUMI is None and not os.environ.get("CI"), reason="Pulumi engine not installed (scripts/install-pulumi.sh)"
)
# The offline-built engine pairs the CLI with the Python language host of sdk v3.79.0 (the newest the
# Go module proxy serves), whose RunPlugin predates how current engines start Python policy packs.
OFFLINE_HOST = PULUMI is not None and (Path(PULUMI).parent / "pulumi-language-python-host").exists()
needs_policy_host = pytest.mark.skipif(
    OFFLINE_HOST, reason="Python policy packs need an official Pulumi install (scripts/pulumi-engine/README.md)"
)


def _env(tmp: Path) -> dict[str, str]:
    assert PULUMI is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(
        PATH=f"{Path(PULUMI).parent}:{env.get('PATH', '')}",
        PULUMI_HOME=str(tmp / "home"),
        PULUMI_BACKEND_URL=f"file://{tmp / 'state'}",
        PULUMI_CONFIG_PASSPHRASE="",
        PULUMI_SKIP_UPDATE_CHECK="1",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
    )
    (tmp / "state").mkdir(exist_ok=True)
    return env


def _project(tmp: Path, main: str) -> Path:
    proj = tmp / "proj"
    proj.mkdir()
    (proj / "Pulumi.yaml").write_text(
        "name: kaizen\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {ROOT / '.venv'}\nstackConfigDir: stacks\n"
    )
    (proj / "__main__.py").write_text(main)
    (proj / "stacks").mkdir()
    return proj


def _pulumi_run(proj: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert PULUMI is not None
    return subprocess.run(
        [PULUMI, *args, "--non-interactive"], cwd=proj, env=env, capture_output=True, text=True, timeout=300
    )


@needs_engine
def test_real_engine_stops_on_an_image_tag_naming_the_key(tmp_path: Path) -> None:
    proj = _project(tmp_path, (ROOT / "__main__.py").read_text())
    (proj / "infra").symlink_to(ROOT / "infra")
    stack_file = (ROOT / "stacks" / "Pulumi.aws-dev.yaml").read_text()
    tagged = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris:latest"
    lines = [
        f"  kaizen:image: {tagged}" if line.startswith("  kaizen:image:") else line for line in stack_file.splitlines()
    ]
    (proj / "stacks" / "Pulumi.aws-dev.yaml").write_text("\n".join(lines) + "\n")
    env = _env(tmp_path)
    assert _pulumi_run(proj, env, "stack", "init", "aws-dev").returncode == 0
    result = _pulumi_run(proj, env, "preview", "--stack", "aws-dev")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "invalid stack configuration: kaizen:image:" in out and "referenced by tag" in out, out[-2000:]
    assert "Traceback" not in out


PROTECTED_PROGRAM = """
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Noop(ResourceProvider):
    def create(self, props):
        return CreateResult("noop-1", props)


class Thing(Resource):
    def __init__(self, name, opts=None):
        super().__init__(Noop(), name, {"value": 1}, opts)


Thing("kept", pulumi.ResourceOptions(protect=True))
"""


@needs_engine
@needs_policy_host
def test_policy_pack_blocks_a_protected_resource_in_a_preview_stack(tmp_path: Path) -> None:
    proj = _project(tmp_path, PROTECTED_PROGRAM)
    env = _env(tmp_path)
    assert _pulumi_run(proj, env, "stack", "init", "aws-pr-1").returncode == 0
    result = _pulumi_run(proj, env, "preview", "--stack", "aws-pr-1", "--policy-pack", str(ROOT / "infra" / "policy"))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-2000:]
    assert "kaizen-guardrails" in out and "[mandatory]  preview-stacks-disposable" in out, out[-2000:]
    assert "preview stacks must not protect resources" in out
