"""The model card that travels with each package version: `model-card.json` and `model-card.md`
beside `kaizen.yaml` (data hash, metrics, gate result, drift baseline, lineage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_packages.manifest import read_manifest


def model_card(package_dir: Path, *, gate: dict[str, Any] | None = None, run: dict[str, Any] | None = None) -> dict:
    manifest = read_manifest(package_dir)
    baseline = {name: {k: v for k, v in feature.model_dump().items() if k in ("count", "mean", "std", "min", "max")}
                for name, feature in manifest.baseline.features.items()}
    return {
        "model": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "framework": f"{manifest.framework}/{manifest.format}",
        "artifact_sha256": manifest.artifact_sha256,
        "task": manifest.output.task,
        "labels": manifest.output.labels,
        "inputs": [{"name": s.name, "dtype": s.dtype} for s in manifest.inputs],
        "metrics": manifest.baseline.metrics,
        "training_data_sha256": manifest.lineage.data_sha256,
        "code_revision": manifest.lineage.code_revision,
        "parameters": manifest.lineage.parameters,
        "gate": None if gate is None else {k: gate[k] for k in ("promote", "metric", "champion", "challenger",
                                                                  "interval", "rows", "reasons") if k in gate},
        "run": run,
        "drift_baseline": baseline,
    }


def write_model_card(package_dir: Path, **kwargs: Any) -> dict[str, Any]:
    card = model_card(package_dir, **kwargs)
    (package_dir / "model-card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    lines = [f"# {card['model']} {card['version']}", "", card["description"] or "", "",
             f"- framework: {card['framework']}, task: {card['task']}",
             f"- training data sha256: `{card['training_data_sha256']}`",
             f"- code revision: `{card['code_revision']}`",
             f"- metrics: {', '.join(f'{k} {v:.4g}' for k, v in card['metrics'].items()) or 'none'}"]
    if card["gate"]:
        g = card["gate"]
        low, high = g["interval"]
        lines.append(f"- gate: {'promoted' if g['promote'] else 'rejected'} on {g['metric']} "
                     f"({g['champion']:.4g} -> {g['challenger']:.4g}, 95% interval [{low:+.4g}, {high:+.4g}])")
    lines += ["", "| feature | type | mean | std | min | max |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for spec in card["inputs"]:
        b = card["drift_baseline"].get(spec["name"], {})
        cells = [f"{b[k]:.4g}" if isinstance(b.get(k), int | float) else "" for k in ("mean", "std", "min", "max")]
        lines.append(f"| {spec['name']} | {spec['dtype']} | " + " | ".join(cells) + " |")
    (package_dir / "model-card.md").write_text("\n".join(lines) + "\n")
    return card
