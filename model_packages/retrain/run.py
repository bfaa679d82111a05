"""`kaizen retrain`: run a pipeline against the deployed champion; gate, package, audit."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_packages.audit import trail
from model_packages.errors import KaizenError
from model_packages.reproducible import code_revision, pinned_env
from model_packages.retrain.card import write_model_card
from model_packages.retrain.pipeline import Backend, Pipeline, RunResult, sha256_file
from model_packages.retrain.steps import next_patch


@dataclass
class RetrainOutcome:
    promoted: bool
    report: Path
    package: Path | None
    run: RunResult


def champion_from_stack(outputs: dict[str, Any], packages: Path) -> Path:
    """The package the stack serves: `modelName`/`modelVersion` outputs, looked up in `packages`
    (<packages>/<name>/<version>). Never "latest"."""
    from model_packages import stack_outputs as out

    name, version = outputs.get(out.MODEL_NAME), outputs.get(out.MODEL_VERSION)
    if not isinstance(name, str) or not isinstance(version, str):
        raise KaizenError(f"the stack exports no {out.MODEL_NAME}/{out.MODEL_VERSION}: deploy a model first")
    found = packages / name / version
    if not (found / "kaizen.yaml").is_file():
        raise KaizenError(f"the deployed {name} {version} is not in the package store {packages}")
    return found


def _same_package(built: Path, stored: Path) -> bool:
    """The stored package is this candidate (a re-run): the same files, the model card aside
    (retrain writes that after copying)."""
    card = {"model-card.md", "model-card.json"}
    mine = {k: v for k, v in package_files(built).items() if k not in card}
    return mine == {k: v for k, v in package_files(stored).items() if k not in card}


def package_files(package_dir: Path) -> dict[str, str]:
    """SHA-256 of every file of a package, by relative path."""
    return {str(p.relative_to(package_dir)): sha256_file(p) for p in sorted(package_dir.rglob("*")) if p.is_file()}


def package_hash(package_dir: Path) -> str | None:
    """The local stack's image input hash of the package (package files plus runtime code); None
    where the local stack (`kaizen_infra`) is not installed, e.g. in a trainer image: the hash covers
    Kaizen's own files, which a trainer image holds only in part, so it would differ there."""
    import importlib.util

    if importlib.util.find_spec("kaizen_infra") is None:
        return None
    from model_packages.image.inputs import package_hash as image_input_hash

    return image_input_hash(package_dir)


def retrain(pipeline: Pipeline, data: Path, champion: Path, out: Path, *, cache_dir: Path,
            params: dict[str, Any] | None = None, pipeline_file: Path | None = None,
            backend: Backend | None = None) -> RetrainOutcome:
    """Gate a candidate trained on `data` against `champion`; package it into `out` if it passes.
    Either way the gate report is written and the decision recorded in the audit trail. Steps run
    in this process, or on `backend` (e.g. Ray) with the same cache and the same artifacts."""
    from model_packages.manifest import read_manifest

    champion_manifest = read_manifest(champion)
    out.mkdir(parents=True, exist_ok=True)
    work = cache_dir / "work"
    # `version`: None packages the champion's next patch version; a later one if that is taken.
    context: dict[str, Any] = {"champion": champion.resolve(), "work_dir": work, "version": None}
    gated = pipeline.run(data, cache_dir=cache_dir, params=params, context=context, until="gate",
                         backend=backend)
    gate = gated.outputs.get("gate")
    if not isinstance(gate, dict) or "promote" not in gate:
        raise KaizenError(f"pipeline {pipeline.name} has no `gate` step returning a gate result")
    report = out / "gate-report.md"
    report.write_text(str(gate["report"]))
    data_sha256 = sha256_file(data)
    record = {"pipeline": pipeline.name, "pipeline_version": gated.version, "data_sha256": data_sha256,
              "champion": f"{champion_manifest.name} {champion_manifest.version}", "metric": gate["metric"],
              "champion_score": gate["champion"], "challenger_score": gate["challenger"],
              "interval": list(gate["interval"]), "promote": bool(gate["promote"])}
    trail.append("gate", **record)
    if not gate["promote"]:
        return RetrainOutcome(False, report, None, gated)
    # The package's manifest and the run record name one code revision: the pipeline file's checkout.
    revision = code_revision(pipeline_file.resolve().parent if pipeline_file else None)
    while True:  # a version the store holds as another package is never overwritten: take the next
        with pinned_env(KAIZEN_CODE_REVISION=revision or ""):  # none stays none, not the cwd's checkout
            full = pipeline.run(data, cache_dir=cache_dir, params=params, context=context, backend=backend)
        built = full.outputs.get("package")
        if not isinstance(built, Path) or not (built / "kaizen.yaml").is_file():
            raise KaizenError(f"pipeline {pipeline.name}'s `package` step returned no model package")
        manifest = read_manifest(built)
        target = out / manifest.name / manifest.version
        if not target.exists() or _same_package(built, target):
            break
        if context["version"] == manifest.version:
            raise KaizenError(f"pipeline {pipeline.name}'s `package` step ignores its `version` argument, and "
                              f"{target} already holds another package: it is not overwritten")
        context = {**context, "version": next_patch(manifest.version)}
    full.nodes = {**gated.nodes, **full.nodes}  # where each step of this retrain ran
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(built, target)
    merged = {**pipeline.params, **(params or {})}
    # What the model card keeps is what a replay reproduces: no paths, no cache hits.
    reproducible = {"pipeline": pipeline.name, "pipeline_version": full.version, "params": merged,
                    # the package's own: a `package` step cached at an earlier commit keeps that commit
                    "step_keys": full.keys, "code_revision": manifest.lineage.code_revision,
                    "data_sha256": data_sha256}
    write_model_card(target, gate=gate, run=reproducible)
    created = read_manifest(target).lineage.created_at
    run_record = reproducible | {
        "pipeline_file": str(pipeline_file.resolve()) if pipeline_file else None,
        "pipeline_file_sha256": sha256_file(pipeline_file) if pipeline_file else None,
        "seeds": {k: v for k, v in merged.items() if "seed" in k.lower()},
        "data": str(data.resolve()), "champion": {"path": str(champion.resolve()), "name": champion_manifest.name,
                                                  "version": champion_manifest.version,
                                                  "manifest_sha256": sha256_file(champion / "kaizen.yaml")},
        "source_date_epoch": int(created.timestamp()) if created else None,
        "package": {"name": manifest.name, "version": manifest.version, "files": package_files(target),
                    "package_hash": package_hash(target)},
        "executed": full.executed, "cached": full.cached}
    (out / "run.json").write_text(json.dumps(run_record, indent=2, sort_keys=True) + "\n")
    trail.append("package", name=manifest.name, version=manifest.version, artifact_sha256=manifest.artifact_sha256,
                 pipeline=pipeline.name, pipeline_version=full.version, data_sha256=data_sha256,
                 parent=champion_manifest.version)
    return RetrainOutcome(True, report, target, full)
