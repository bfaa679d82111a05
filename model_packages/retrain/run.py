"""`kaizen retrain`: run a pipeline against the deployed champion; gate, package, audit."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_packages.audit import trail
from model_packages.errors import KaizenError
from model_packages.retrain.card import write_model_card
from model_packages.retrain.pipeline import Pipeline, RunResult, sha256_file


@dataclass
class RetrainOutcome:
    promoted: bool
    report: Path
    package: Path | None
    run: RunResult


def champion_from_stack(outputs: dict[str, Any], packages: Path) -> Path:
    """The package the stack serves: `model_name`/`model_version` outputs, looked up in `packages`
    (<packages>/<name>/<version>). Never "latest"."""
    name, version = outputs.get("model_name"), outputs.get("model_version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise KaizenError("the stack exports no model_name/model_version: deploy a model first")
    found = packages / name / version
    if not (found / "kaizen.yaml").is_file():
        raise KaizenError(f"the deployed {name} {version} is not in the package store {packages}")
    return found


def _revision() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def retrain(pipeline: Pipeline, data: Path, champion: Path, out: Path, *, cache_dir: Path,
            params: dict[str, Any] | None = None) -> RetrainOutcome:
    """Gate a candidate trained on `data` against `champion`; package it into `out` if it passes.
    Either way the gate report is written and the decision recorded in the audit trail."""
    from model_packages.manifest import read_manifest

    champion_manifest = read_manifest(champion)
    out.mkdir(parents=True, exist_ok=True)
    work = cache_dir / "work"
    context = {"champion": champion.resolve(), "work_dir": work}
    gated = pipeline.run(data, cache_dir=cache_dir, params=params, context=context, until="gate")
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
    full = pipeline.run(data, cache_dir=cache_dir, params=params, context=context)
    built = full.outputs.get("package")
    if not isinstance(built, Path) or not (built / "kaizen.yaml").is_file():
        raise KaizenError(f"pipeline {pipeline.name}'s `package` step returned no model package")
    manifest = read_manifest(built)
    target = out / manifest.name / manifest.version
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(built, target)
    run_record = {"pipeline": pipeline.name, "pipeline_version": full.version, "params": {**pipeline.params,
                  **(params or {})}, "data": str(data), "step_keys": full.keys, "code_revision": _revision(),
                  "executed": full.executed, "cached": full.cached}
    (out / "run.json").write_text(json.dumps(run_record, indent=2, sort_keys=True))
    write_model_card(target, gate=gate, run=run_record | {"data_sha256": data_sha256})
    trail.append("package", name=manifest.name, version=manifest.version, artifact_sha256=manifest.artifact_sha256,
                 pipeline=pipeline.name, pipeline_version=full.version, data_sha256=data_sha256,
                 parent=champion_manifest.version)
    return RetrainOutcome(True, report, target, full)
