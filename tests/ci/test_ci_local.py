"""`kaizen ci` end to end on the local target: real Pulumi engine, real Docker, a real registry.

Build once and promote (the same digest reaches a local staging and a local prod stack), roll prod
back to the previous digest from its deploy history, and the preview life cycle of a pull request:
create -> update -> cleanup of a closed pull request -> destroy twice -> destroy of a stack that
never existed. One module-wide set of stacks; tests build on each other in file order.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from typer.testing import CliRunner

from infra.local import scope_name
from infra.local.docker_ops import leftovers, purge
from model_packages.audit import trail
from model_packages.ci import stacks
from model_packages.cli import app
from model_packages.image.localregistry import LocalRegistry
from tests.support import ROOT, free_ports, unavailable
from tests.support.pulumi_cli import have_docker

pytestmark = [pytest.mark.pulumi, pytest.mark.docker, pytest.mark.timeout(1200)]

STACKS_DIR = ROOT / "stacks"


@dataclass
class Ci:
    tmp: Path
    registry: LocalRegistry
    env: dict[str, str]
    stacks: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    pr: int = 0

    def kaizen(self, *args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)
        assert result.exit_code == 0, f"kaizen {' '.join(args)} exited {result.exit_code}:\n{result.output[-4000:]}"
        return result

    def json(self, *args: str) -> Any:
        out = self.kaizen(*args).stdout
        return json.loads(out[out.index("{") :]) if "{" in out else json.loads(out)

    def local_stack(self, name: str, kind: str) -> None:
        """A serving stack's config file, as a user commits it: target, kind, model, ports; no image."""
        ports = free_ports(5)
        config = {
            "kaizen:target": "local",
            "kaizen:stackKind": kind,
            "kaizen:owner": "ml-platform",
            "kaizen:costCenter": "ml-0001",
            "kaizen:deletionProtection": False,
            "kaizen:model": {"name": "iris-classifier", "version": "1.0.0"},
            "kaizen:local": {"registryPort": ports[0], "endpointPort": ports[1], "backendPorts": ports[2:4],
                             "prometheusPort": ports[4], "scrapeInterval": "5s", "restartPolicy": "on-failure"},
        }
        (STACKS_DIR / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
        self.stacks.append(name)


def _package(tmp: Path, version: str) -> Path:
    out = tmp / f"iris-{version}"
    shutil.copytree(ROOT / "examples" / "iris-classifier", out)
    manifest = out / "kaizen.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", f"version: {version}", 1))
    return out


def _served(outputs: dict[str, Any]) -> tuple[str, Any]:
    url = outputs["endpointUrl"]
    answer = requests.post(f"{url}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10)
    assert answer.status_code == 200, answer.text
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    info = next(line for line in metrics.splitlines() if line.startswith("kaizen_model_info{"))
    return info.split('version="', 1)[1].split('"', 1)[0], answer.json()["predictions"]


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ci]:
    if not have_docker():
        unavailable("no Docker engine")
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry is not installed")
    tmp = tmp_path_factory.mktemp("ci")
    tag = os.getpid() % 1000
    env = {
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "ci-e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "KAIZEN_AUDIT_TRAIL": str(tmp / "audit.jsonl"),
        "KAIZEN_AUDIT_KEY": str(tmp / "audit-key.pem"),
        "KAIZEN_IMAGES_FILE": str(tmp / "kaizen-images.json"),
        "GITHUB_ACTOR": "e2e",
    }
    (tmp / "state").mkdir()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the Automation API reads the process environment
    with LocalRegistry() as registry:
        state = Ci(tmp, registry, env, pr=300 + tag % 90)
        try:
            yield state
        finally:
            names = [*state.stacks, f"pr-{state.pr}", *(stacks.preview_stack_name("local", state.pr, p)
                                                        for p in ("iris-1.0.0", "iris-1.0.1"))]
            try:
                project = stacks.Project(ROOT)
                stacks.preview_destroy(project, "local", state.pr)
                for stack in names:
                    if stack in project.stack_names():
                        project.select(stack).destroy()
                    scope = scope_name("kaizen", stack)
                    if any(leftovers(scope).values()):
                        purge(scope)
            finally:  # the stack files this module wrote into stacks/, whatever failed above
                for stack in names:
                    (STACKS_DIR / f"Pulumi.{stack}.yaml").unlink(missing_ok=True)
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def test_publish_builds_once_and_prints_the_digest(ci: Ci) -> None:
    for version in ("1.0.0", "1.0.1"):
        out = ci.kaizen("ci", "publish", str(_package(ci.tmp, version)), "--registry", ci.registry.address,
                        "--local-base").stdout.strip().splitlines()[-1]
        assert out.startswith(f"{ci.registry.address}/kaizen/iris-classifier@sha256:"), out
        ci.images[version] = out
    assert ci.images["1.0.0"] != ci.images["1.0.1"]


def test_the_same_digest_reaches_staging_then_prod(ci: Ci) -> None:
    tag = os.getpid() % 1000
    staging, prod = f"ci{tag}-staging", f"ci{tag}-prod"
    ci.local_stack(staging, "staging")
    ci.local_stack(prod, "prod")
    project = ["--project-dir", str(ROOT)]
    staged = ci.json("ci", "deploy", staging, "--image", ci.images["1.0.0"], *project)
    assert staged["image"] == ci.images["1.0.0"]
    promoted = ci.json("ci", "promote", "--from", staging, "--to", prod, *project)
    assert promoted["imageDigest"] == staged["imageDigest"]
    assert _served(promoted) == _served(staged)
    smoke = ci.json("ci", "smoke-stack", prod, "--package", str(ROOT / "examples" / "iris-classifier"), *project)
    assert smoke["version"] == "1.0.0" and len(smoke["predictions"]) == 1


def test_rollback_redeploys_the_previous_digest_and_is_recorded(ci: Ci) -> None:
    prod = ci.stacks[1]
    project = ["--project-dir", str(ROOT)]
    assert _served(ci.json("ci", "deploy", prod, "--image", ci.images["1.0.1"], *project))[0] == "1.0.1"
    rolled = ci.json("ci", "rollback", prod, *project)
    assert rolled["image"] == ci.images["1.0.0"]
    assert _served(rolled)[0] == "1.0.0"
    events = [(r["event"], r.get("stack"), r.get("image")) for r in trail.read(ci.env["KAIZEN_AUDIT_TRAIL"])]
    assert events[-1] == ("rollback", prod, ci.images["1.0.0"])
    assert ("deploy", prod, ci.images["1.0.1"]) in events
    assert ("image_push", None, ci.images["1.0.1"]) in events  # publish recorded the push, with provenance
    # A stack with no config file and no state is refused, not created.
    missing = CliRunner().invoke(app, ["ci", "deploy", "ci-nope-prod", "--image", ci.images["1.0.0"], *project],
                                 env=ci.env)
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_preview_create_update_cleanup_and_idempotent_destroy(ci: Ci) -> None:
    project = ["--project-dir", str(ROOT)]
    pr = str(ci.pr)
    package = str(ci.tmp / "iris-1.0.1")  # names the model; the image is the one already built
    created = ci.json("ci", "preview", "up", "--pr", pr, "--target", "local", "--image", ci.images["1.0.1"],
                      "--package", package, *project)
    assert _served(created)[0] == "1.0.1"
    updated = ci.json("ci", "preview", "up", "--pr", pr, "--target", "local", "--image", ci.images["1.0.1"],
                      "--package", package, "--summary", str(ci.tmp / "up.txt"),
                      "--preview-summary", str(ci.tmp / "preview.txt"), *project)
    assert updated["imageDigest"] == created["imageDigest"]
    assert "succeeded" in (ci.tmp / "up.txt").read_text()  # the comment's `pulumi up` section
    preview = (ci.tmp / "preview.txt").read_text()  # the comment's `pulumi preview` section
    assert "Previewing update" in preview and "Resources:" in preview and "unchanged" in preview, preview
    name = stacks.preview_stack_name("local", ci.pr, package)  # one stack per package: pr-N-iris-1-0-1
    assert name == f"pr-{pr}-iris-1-0-1" and (STACKS_DIR / f"Pulumi.{name}.yaml").is_file()
    assert ci.json("ci", "cleanup", "--target", "local", "--open", str(ci.pr + 1), *project) == {"destroyed": [ci.pr]}
    assert not (STACKS_DIR / f"Pulumi.{name}.yaml").exists()
    assert leftovers(scope_name("kaizen", name)) == {"containers": [], "volumes": [], "images": []}
    for number in (pr, pr, str(ci.pr + 50)):  # closed twice, and one that never had a stack
        assert "nothing to do" in ci.kaizen("ci", "preview", "destroy", "--pr", number, "--target", "local",
                                            *project).output


def test_a_model_repository_init_ci_wrote_runs_kaizen_ci(ci: Ci, tmp_path: Path) -> None:
    """`kaizen init-ci` into an empty repository, then a preview stack up and down from there (the
    installed program, the written Pulumi.yaml and preview template), as the workflows run it."""
    assert CliRunner().invoke(app, ["init-ci", str(tmp_path)]).exit_code == 0
    shutil.copytree(ci.tmp / "iris-1.0.1", tmp_path / "models" / "iris")
    pr, project = str(ci.pr + 60), ["--project-dir", str(tmp_path)]
    try:
        up = ci.json("ci", "preview", "up", "--pr", pr, "--target", "local", "--image", ci.images["1.0.1"],
                     "--package", "models/iris", *project)
        assert _served(up)[0] == "1.0.1"
        assert (tmp_path / "stacks" / f"Pulumi.pr-{pr}-models-iris.yaml").is_file()
    finally:
        assert "destroyed" in ci.kaizen("ci", "preview", "destroy", "--pr", pr, "--target", "local", *project).output
    assert leftovers(scope_name("kaizen", f"pr-{pr}-models-iris")) == {"containers": [], "volumes": [], "images": []}


def test_two_packages_get_their_own_preview_and_deploy_stacks(ci: Ci) -> None:
    """A pull request changing two packages previews each in its own stack pr-N-<package> (side by
    side, own ports); closing it destroys both. On main each package deploys to its own stack
    <stack>-<package>, configured from the shared stacks/Pulumi.<stack>.yaml."""
    project = ["--project-dir", str(ROOT)]
    pr = ci.pr + 70
    served = {}
    for version in ("1.0.0", "1.0.1"):
        package = str(ci.tmp / f"iris-{version}")
        outputs = ci.json("ci", "preview", "up", "--pr", str(pr), "--target", "local", "--image", ci.images[version],
                          "--package", package, *project)
        served[version] = (outputs["endpointUrl"], _served(outputs)[0])
        smoke = ci.json("ci", "preview", "smoke", "--pr", str(pr), "--target", "local", "--package", package,
                        *project)
        assert smoke["version"] == version
    assert served["1.0.0"][0] != served["1.0.1"][0] and [v for _, v in served.values()] == ["1.0.0", "1.0.1"]
    assert _served({"endpointUrl": served["1.0.0"][0]})[0] == "1.0.0"  # the first still serves beside the second
    closed = ci.kaizen("ci", "preview", "destroy", "--pr", str(pr), "--target", "local", *project).output
    assert f"pr-{pr}-iris-1-0-0" in closed and f"pr-{pr}-iris-1-0-1" in closed
    assert stacks.preview_stacks(stacks.Project(ROOT), "local", pr) == []

    # On main: the shared stacks/Pulumi.<stack>.yaml configures each package's own stack <stack>-<package>
    # (the shared stack itself is never deployed in a multi-package repository).
    shared = f"ci{os.getpid() % 1000}-shared"
    ci.local_stack(shared, "staging")
    package = str(ci.tmp / "iris-1.0.1")
    ci.stacks.append(f"{shared}-iris-1-0-1")  # cleaned up by the fixture whatever happens
    deployed = ci.json("ci", "deploy", shared, "--package", package, "--image", ci.images["1.0.1"], *project)
    assert deployed["image"] == ci.images["1.0.1"] and _served(deployed)[0] == "1.0.1"
    config = yaml.safe_load((STACKS_DIR / f"Pulumi.{shared}-iris-1-0-1.yaml").read_text())["config"]
    assert config["kaizen:model"] == {"name": "iris-classifier", "version": "1.0.1"}
    assert config["kaizen:stackKind"] == "staging"
    smoke = ci.json("ci", "smoke-stack", shared, "--per-package", "--package", package, *project)
    assert smoke["version"] == "1.0.1"
    assert shared not in stacks.Project(ROOT).stack_names()
