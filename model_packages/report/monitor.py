"""The package baseline as SageMaker Model Monitor's `statistics.json` and `constraints.json`.

Layout as documented for Model Monitor (Schema for Statistics / Schema for Constraints, SageMaker
developer guide). The baseline keeps decile bins, quantiles and category shares, not raw rows, so the
KLL section is built from them: `buckets` are the baseline's bins (lower/upper bound and count) and
the sketch holds one level with the recorded quantiles. Sensitive features carry counts only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from model_packages.errors import PackageError
from model_packages.manifest import FeatureBaseline, FeatureSpec, Manifest

KLL_PARAMETERS = {"c": 0.64, "k": 2048.0}  # Model Monitor's defaults
MONITORING_CONFIG = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}


def _inferred_type(spec: FeatureSpec) -> str:
    if spec.dtype == "categorical" and not spec.numeric_categories:
        return "String"
    return "Integral" if spec.dtype in ("integer", "boolean") or (
        spec.dtype == "categorical" and all(float(c).is_integer() for c in spec.categories or [])) else "Fractional"


def _numeric(base: FeatureBaseline) -> dict[str, Any]:
    stats: dict[str, Any] = {"common": {"num_present": base.count, "num_missing": base.missing}}
    if base.mean is None:
        return stats
    stats.update(mean=base.mean, sum=base.mean * base.count, std_dev=base.std, min=base.min, max=base.max)
    if base.bin_fractions:
        bounds = [base.min, *base.bin_edges, base.max]
        counts = [f * base.count for f in base.bin_fractions]
        buckets = [{"lower_bound": float(lo), "upper_bound": float(hi), "count": float(c)}
                   for lo, hi, c in zip(bounds, bounds[1:], counts, strict=False)]
        sketch = [base.min, *sorted(base.quantiles.values()), base.max]
        stats["distribution"] = {"kll": {"buckets": buckets,
                                         "sketch": {"parameters": KLL_PARAMETERS, "data": [sketch]}}}
    return stats


def _string(base: FeatureBaseline) -> dict[str, Any]:
    stats: dict[str, Any] = {"common": {"num_present": base.count, "num_missing": base.missing}}
    if base.category_fractions:
        stats["distinct_count"] = float(len(base.category_fractions))
        stats["distribution"] = {"categorical": {"buckets": [
            {"value": value, "count": float(round(share * base.count))}
            for value, share in base.category_fractions.items()]}}
    return stats


def statistics(manifest: Manifest) -> dict[str, Any]:
    features = []
    for spec in manifest.inputs:
        base = manifest.baseline.features.get(spec.name)
        if base is None:
            continue
        kind = _inferred_type(spec)
        entry: dict[str, Any] = {"name": spec.name, "inferred_type": kind}
        entry["string_statistics" if kind == "String" else "numerical_statistics"] = (
            _string(base) if kind == "String" else _numeric(base))
        features.append(entry)
    return {"version": 0.0, "dataset": {"item_count": manifest.baseline.rows}, "features": features}


def constraints(manifest: Manifest) -> dict[str, Any]:
    features = []
    for spec in manifest.inputs:
        base = manifest.baseline.features.get(spec.name)
        if base is None:
            continue
        kind = _inferred_type(spec)
        total = base.count + base.missing
        entry: dict[str, Any] = {"name": spec.name, "inferred_type": kind,
                                 "completeness": base.count / total if total else 1.0}
        if kind == "String":
            if not spec.sensitive:
                entry["string_constraints"] = {"domains": [str(c) for c in spec.categories or []]}
        elif base.min is not None:
            entry["num_constraints"] = {"is_non_negative": base.min >= 0}
        entry["monitoringConfigOverrides"] = {}
        features.append(entry)
    return {"version": 0.0, "features": features, "monitoring_config": MONITORING_CONFIG}


def export_sagemaker(manifest: Manifest, out: Path) -> list[Path]:
    """Write both files into `out` (created), each atomically; returns their paths."""
    if not manifest.baseline.features:
        raise PackageError(f"package {manifest.name} {manifest.version} has no baseline to export")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in (("statistics.json", statistics(manifest)), ("constraints.json", constraints(manifest))):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, out / name)
        written.append(out / name)
    return written
