"""The trainer image: `kaizen retrain` with a pipeline file and the locked dependencies.

    kaizen build-trainer examples/iris_pipeline.py --local-base --tag kaizen/iris-trainer:1

Context (deterministic, like a model image's, :mod:`model_packages.image.context`)::

    Dockerfile              from Dockerfile.trainer.tmpl
    requirements.lock       locks/trainer.txt (hashed; installed offline with --require-hashes)
    wheels/*.whl            the locked wheels
    code/opt/kaizen/lib/model_packages/...   Kaizen without the CI and build-engine code
    code/opt/kaizen/pipeline.py              the pipeline file (infra/retraining_config.TRAINER_PIPELINE)
    code/usr/local/bin/kaizen                `python -m model_packages.retrain`

The image runs as uid 10001 with HOME=/tmp; its entrypoint is `kaizen`, so the clouds' job
definitions pass `retrain /opt/kaizen/pipeline.py --data ... --champion ... --out ...`. The code
revision of the build is baked in as KAIZEN_CODE_REVISION (there is no git inside), so a run
inside the image records the revision a replay outside it checks.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import model_packages
from model_packages.errors import KaizenError
from model_packages.image import locks
from model_packages.image.context import (
    RUNTIME_LIB,
    SOURCE_DATE_EPOCH,
    USER_ID,
    VENV,
    Bases,
    ContextFiles,
    dockerfile_quote,
    label_lines,
    link_or_copy,
    public_url,
)
from model_packages.shell import run_quiet
from model_packages.verify import sha256_file

if TYPE_CHECKING:
    from model_packages.image.build import BuildResult

FLAVOR = "trainer"
PIPELINE_PATH = "/opt/kaizen/pipeline.py"
TEMPLATE = Path(__file__).with_name("Dockerfile.trainer.tmpl")
EXCLUDED = {"ci", "__pycache__"}  # the trainer never runs CI commands
SUFFIXES = {".py", ".typed", ".json", ".yaml", ".txt", ".tmpl"}
SMOKE = ("numpy", "pandas", "pyarrow", "sklearn", "skops.io", "onnx", "skl2onnx", "onnxruntime", "typer", "rich",
         "cryptography")
LAUNCHER = f"#!/bin/sh\nexec {VENV}/bin/python -m model_packages.retrain \"$@\"\n"


class TrainerError(KaizenError):
    """The trainer image's context could not be generated."""


@dataclass
class TrainerContext(ContextFiles):
    directory: Path
    tag: str
    pipeline: str
    labels: dict[str, str] = field(default_factory=dict)
    arch: str = "amd64"  # the trainer lock is amd64's


def _revision(where: Path) -> str:
    from model_packages.reproducible import code_revision

    return code_revision(where) or "unknown"


def generate_trainer_context(pipeline_file: Path, out_dir: Path, *, bases: Bases, tag: str | None = None,
                             log: Callable[[str], None] = lambda _m: None) -> TrainerContext:
    """Check the pipeline file loads, then write the complete build context into `out_dir`."""
    from model_packages.retrain.pipeline import load_pipeline

    pipeline = load_pipeline(pipeline_file)  # a broken pipeline file is never built
    if not any(s.name == "gate" for s in pipeline.steps) or not any(s.name == "package" for s in pipeline.steps):
        raise TrainerError(f"{pipeline_file}: a trainer pipeline needs a `gate` and a `package` step")
    lock_file = locks.lock_path(FLAVOR)
    wheels = locks.ensure_wheels(locks.read_lock(lock_file), log=log)
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for whl in wheels:
        link_or_copy(whl, out / "wheels" / whl.name)
    shutil.copyfile(lock_file, out / "requirements.lock")
    src = Path(model_packages.__file__).parent
    lib = out / "code" / RUNTIME_LIB.lstrip("/") / "model_packages"
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and path.suffix in SUFFIXES and not EXCLUDED & set(rel.parts):
            (lib / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, lib / rel)
    (out / "code" / PIPELINE_PATH.lstrip("/")).write_bytes(pipeline_file.read_bytes())
    launcher = out / "code" / "usr" / "local" / "bin" / "kaizen"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    where = pipeline_file.resolve().parent
    revision = _revision(where)
    digest = hashlib.sha256(pipeline_file.read_bytes()).hexdigest()
    labels = {
        "org.opencontainers.image.title": f"{pipeline.name}-trainer",
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": public_url(run_quiet(["git", "remote", "get-url", "origin"], cwd=where)),
        "io.kaizen.trainer.pipeline": pipeline.name,
        "io.kaizen.trainer.pipeline-sha256": digest,
        "io.kaizen.trainer.pipeline-version": pipeline.version(),
        "io.kaizen.lock": FLAVOR,
        "io.kaizen.lock-sha256": sha256_file(lock_file),
        "io.kaizen.runtime-version": model_packages.__version__,
    }
    text = TEMPLATE.read_text()
    for key, value in {"BUILDER_BASE": bases.builder, "RUNTIME_BASE": bases.runtime, "VENV": VENV,
                       "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH), "RUNTIME_LIB": RUNTIME_LIB,
                       "USER_ID": str(USER_ID), "SMOKE": ", ".join(SMOKE), "REVISION": dockerfile_quote(revision),
                       "LABELS": label_lines(labels)}.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise TrainerError("the trainer Dockerfile template has an unfilled placeholder")
    (out / "Dockerfile").write_text(text)
    (out / ".dockerignore").write_text("")
    return TrainerContext(out, tag or f"kaizen/{pipeline.name}-trainer:{digest[:12]}", pipeline.name, labels)


def build_trainer(pipeline_file: Path, *, bases: Bases, tag: str | None = None, client: Any = None,
                  nocache: bool = False, context_dir: Path | None = None,
                  log: Callable[[str], None] = lambda _m: None) -> BuildResult:
    """Generate the trainer context and build it (docker-py, host network, no pull)."""
    import tempfile

    from model_packages.image.build import docker_client, require_image, run_build

    client = client or docker_client()
    for ref in sorted({bases.runtime, bases.builder}):
        require_image(client, ref, False)
    if context_dir is not None:
        return run_build(generate_trainer_context(pipeline_file, context_dir, bases=bases, tag=tag, log=log),
                         client=client, nocache=nocache, log=log)
    with tempfile.TemporaryDirectory(prefix="kaizen-trainer-") as tmp:
        ctx = generate_trainer_context(pipeline_file, Path(tmp) / "context", bases=bases, tag=tag, log=log)
        return run_build(ctx, client=client, nocache=nocache, log=log)
