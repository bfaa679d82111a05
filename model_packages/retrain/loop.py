"""The retraining loop a drift alert starts (`kaizen retrain-webhook` calls :func:`run_loop`).

1. the champion is what the stack serves: its `modelName`/`modelVersion`/`image` outputs, looked
   up in the package store, and checked against the stack's last `deploy` record in the audit trail;
2. the pipeline runs on the configured new data and gates the candidate against that champion;
3. on a pass: the package is built into an image, pushed to the stack's registry (signed SLSA
   provenance), and deployed with `pulumi up` through the Automation API (the local target swaps
   behind its proxy without a failed request); or, with `mode: branch`, left on a git branch with
   the gate report, ready for a pull request; on a fail nothing changes.

Every step is an audit record: drift_alert (the webhook), retrain_run, gate, package, image_push,
deploy or branch. The loop's config is a YAML file (:class:`LoopConfig`), paths relative to it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from model_packages import stack_outputs as out
from model_packages.audit import trail
from model_packages.errors import KaizenError


class LoopError(KaizenError):
    """The loop's config is wrong, or one of its steps failed (nothing after it was done)."""


class LoopConfig(BaseModel):
    """`kaizen retrain-webhook --config FILE`:

        pipeline: examples/iris_pipeline.py
        data: [new/week-49.csv]          # the new data (several files are concatenated)
        store: packages                  # package store <store>/<name>/<version>; holds the champion
        stack: local                     # the stack that serves the champion and gets the candidate
        projectDir: .                    # the Pulumi project
        mode: deploy                     # or `branch`: leave a branch for a pull request
        repo: .                          # mode branch: the git repository
        packagePath: examples/iris-classifier  # mode branch: where the package lives in the repo
        params: {C: 1.0}
        baseImage: null                  # default: the local bases (`kaizen base`)
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    pipeline: Path
    data: list[Path] = Field(min_length=1)
    store: Path
    stack: str = Field(min_length=1)
    project_dir: Path = Path(".")
    cache: Path = Path(".kaizen/cache")
    mode: Literal["deploy", "branch"] = "deploy"
    repo: Path | None = None
    package_path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    base_image: str | None = None

    @field_validator("stack")
    @classmethod
    def _stack(cls, value: str) -> str:
        if not all(ch.isalnum() or ch in "-_./" for ch in value):
            raise ValueError(f"{value!r} is not a stack name")
        return value

    def resolved(self, base: Path) -> LoopConfig:
        def at(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        return self.model_copy(update={
            "pipeline": at(self.pipeline), "data": [at(p) for p in self.data], "store": at(self.store),
            "project_dir": at(self.project_dir), "cache": at(self.cache),
            "repo": at(self.repo) if self.repo is not None else None,
        })


def load_config(path: Path) -> LoopConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LoopError(f"{path}: {error}") from None
    try:
        cfg = LoopConfig.model_validate(raw).resolved(path.resolve().parent)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        raise LoopError(f"{path}: {where}: {message}") from None
    if not cfg.pipeline.is_file():
        raise LoopError(f"{path}: pipeline: {cfg.pipeline} does not exist")
    for file in cfg.data:
        if not file.is_file():
            raise LoopError(f"{path}: data: {file} does not exist")
    if cfg.mode == "branch" and (cfg.repo is None or not cfg.package_path):
        raise LoopError(f"{path}: mode branch needs repo and packagePath")
    if cfg.mode == "deploy" and not (cfg.project_dir / "Pulumi.yaml").is_file():
        raise LoopError(f"{path}: projectDir: {cfg.project_dir} holds no Pulumi.yaml")
    return cfg


# ---- steps ----------------------------------------------------------------------------------------
def _combined_data(files: list[Path], work: Path) -> Path:
    """One CSV of every data file (the header once), named by its content."""
    if len(files) == 1:
        return files[0]
    header: str | None = None
    chunks: list[str] = []
    for file in files:
        lines = file.read_text().splitlines(keepends=True)
        if not lines:
            raise LoopError(f"data file {file} is empty")
        if header is None:
            header = lines[0]
        elif lines[0].strip() != header.strip():
            raise LoopError(f"data file {file}: header {lines[0].strip()!r} differs from {header.strip()!r}")
        chunks += [line if line.endswith("\n") else line + "\n" for line in lines[1:]]
    text = (header or "") + "".join(chunks)
    combined = work / f"data-{hashlib.sha256(text.encode()).hexdigest()[:16]}.csv"
    work.mkdir(parents=True, exist_ok=True)
    combined.write_text(text)
    return combined


def _champion(cfg: LoopConfig, outputs: dict[str, Any]) -> Path:
    from model_packages.retrain.run import champion_from_stack

    champion = champion_from_stack(outputs, cfg.store)
    deploys = [r for r in trail.read() if r.get("event") == "deploy" and r.get("stack") == cfg.stack]
    if deploys and deploys[-1].get("image") != outputs.get(out.IMAGE):
        raise LoopError(f"stack {cfg.stack} serves {outputs.get('image')}, but the audit trail's last deploy is "
                        f"{deploys[-1].get('image')}: deployed outside the trail, stopping")
    return champion


def _revision(directory: Path) -> str:
    proc = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_and_push(package: Path, registry: str, records: Path, base: str | None) -> str:
    """Build the package's image and push it to `registry` (recorded: signed provenance plus an
    `image_push` audit record); the digest-pinned reference."""
    from model_packages.image.base import ensure_bases
    from model_packages.image.build import build_package, docker_client
    from model_packages.image.context import Bases
    from model_packages.image.registry import push_image
    from model_packages.image.settings import ImageSettings

    client = docker_client()
    settings = ImageSettings.from_env()
    bases = Bases.choose(base, None, settings) if base else Bases.local()
    if bases.runtime.startswith("kaizen-base/") or bases.builder.startswith("kaizen-base/"):
        ensure_bases(client, log=lambda _m: None, settings=settings)
    built = build_package(package, bases=bases, client=client, settings=settings, source=settings.image_source)
    return push_image(built.tag, registry, client=client, records_path=records).reference


def deploy(cfg: LoopConfig, image: str, name: str, version: str, *, alert: str) -> dict[str, Any]:
    """`pulumi up` of the stack with `kaizen:image` = `image` (and its model name and version),
    through the Automation API; recorded as a `deploy`."""
    from pulumi import automation as auto

    from model_packages.ci.stacks import Project, check_digest_ref

    check_digest_ref(image)
    stack = Project(cfg.project_dir).select(cfg.stack)
    stack.set_config("kaizen:image", auto.ConfigValue(image))
    stack.set_config("kaizen:model.name", auto.ConfigValue(name), path=True)
    stack.set_config("kaizen:model.version", auto.ConfigValue(version), path=True)
    local = stack.get_all_config().get("kaizen:local")
    if local is not None and "package" in json.loads(local.value or "{}"):  # the image is deployed now
        stack.remove_config("kaizen:local.package", path=True)
    try:
        stack.up(message=f"kaizen: deploy {image}", color="never")
    except auto.CommandError as error:
        raise LoopError(f"`pulumi up` of {cfg.stack} failed:\n{str(error)[-3000:]}") from None
    outputs = {k: v.value for k, v in stack.outputs().items()}
    trail.append("deploy", stack=cfg.stack, target="local", image=image, digest=image.rsplit("@", 1)[1],
                 model=name, version=version, actor=getpass.getuser(), commit=_revision(cfg.project_dir),
                 alert=alert, served_version=outputs.get(out.MODEL_VERSION))
    return outputs


def leave_branch(repo: Path, package_path: str, candidate: Path, report: Path, *, alert: str) -> tuple[str, str]:
    """Commit the candidate (replacing `package_path`) and the gate report on a new branch
    `kaizen/retrain-<name>-<version>` from HEAD, in a throwaway worktree (the checkout is left as
    it is); (branch, commit). Recorded as a `branch`."""
    from model_packages.manifest import read_manifest

    manifest = read_manifest(candidate)
    branch = f"kaizen/retrain-{manifest.name}-{manifest.version}"

    def git(*args: str, cwd: Path = repo) -> str:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
        if proc.returncode:
            raise LoopError(f"git {' '.join(args)}: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip()

    with tempfile.TemporaryDirectory(prefix="kaizen-branch-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "-q", "-B", branch, str(tree), "HEAD")
        try:
            target = tree / package_path
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(candidate, target)
            shutil.copy2(report, target / "gate-report.md")
            git("add", "--all", "--", package_path, cwd=tree)
            git("-c", "user.name=kaizen-retrain", "-c", "user.email=kaizen-retrain@users.noreply.github.com",
                "commit", "-q", "-m", f"Retrain {manifest.name} {manifest.version} (gate passed)\n\n"
                f"{report.read_text()}", cwd=tree)
            commit = git("rev-parse", "HEAD", cwd=tree)
        finally:
            git("worktree", "remove", "--force", str(tree))
    trail.append("branch", repo=str(repo), branch=branch, commit=commit, model=manifest.name,
                 version=manifest.version, alert=alert)
    return branch, commit


# ---- the loop -------------------------------------------------------------------------------------
def run_loop(cfg: LoopConfig, alert: str = "", outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One retraining run for the alert instance `alert`; what it did. `outputs`: the stack's, when
    the caller has them already (default: read through the Automation API)."""
    from model_packages.ci.stacks import Project, outputs_of
    from model_packages.manifest import read_manifest
    from model_packages.retrain.pipeline import load_pipeline, sha256_file
    from model_packages.retrain.run import retrain

    if outputs is None:
        outputs = outputs_of(Project(cfg.project_dir), cfg.stack)
    champion = _champion(cfg, outputs)
    served = read_manifest(champion)
    pipeline = load_pipeline(cfg.pipeline)
    data = _combined_data(cfg.data, cfg.cache / "loop")
    trail.append("retrain_run", pipeline=pipeline.name, pipeline_version=pipeline.version(cfg.params),
                 data=[str(p) for p in cfg.data], data_sha256=sha256_file(data), stack=cfg.stack,
                 champion=f"{served.name} {served.version}", champion_image=outputs.get(out.IMAGE, ""), alert=alert)
    outcome = retrain(pipeline, data, champion, cfg.store, cache_dir=cfg.cache, params=cfg.params)
    result: dict[str, Any] = {"promoted": outcome.promoted, "report": str(outcome.report),
                              "champion": served.version, "executed": outcome.run.executed}
    if not outcome.promoted or outcome.package is None:
        return result  # a failing candidate changes nothing
    candidate = read_manifest(outcome.package)
    result["version"] = candidate.version
    if cfg.mode == "branch":
        assert cfg.repo is not None and cfg.package_path is not None
        result["branch"], result["commit"] = leave_branch(cfg.repo, cfg.package_path, outcome.package,
                                                          outcome.report, alert=alert)
        return result
    registry = str(outputs.get(out.REGISTRY_URL, "")).removeprefix("http://")
    if not registry:
        raise LoopError(f"stack {cfg.stack} exports no {out.REGISTRY_URL} to push the candidate to")
    image = build_and_push(outcome.package, registry, cfg.store / "kaizen-images.json", cfg.base_image)
    result["image"] = image
    after = deploy(cfg, image, candidate.name, candidate.version, alert=alert)
    result["served_version"] = after.get(out.MODEL_VERSION)
    return result
