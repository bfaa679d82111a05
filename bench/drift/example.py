"""The README's example drift report: rows sampled from a package's own baseline, then shifted.

    .venv/bin/python bench/drift/example.py [--package examples/churn-classifier] [--rows 5000]
        [--out bench/results/drift-example] [--screenshot docs/img/drift-report.png]

Numeric features are drawn uniformly inside the baseline's decile bins (so they follow the
training distribution; missing and out-of-range values as often as training predicts), categoricals
by the baseline's shares; then the first numeric feature moves by half a standard deviation and the
first category's share doubles. Headless Chromium renders the report into the screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model_packages.manifest import read_manifest  # noqa: E402


def sample(package: Path, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    manifest = read_manifest(package)
    out: dict[str, np.ndarray] = {}
    shifted_number = shifted_category = False
    for spec in manifest.inputs:
        base = manifest.baseline.features[spec.name]
        if base.category_fractions:
            names = list(base.category_fractions)
            shares = np.array([base.category_fractions[n] for n in names])
            if not shifted_category:
                shares[0] *= 2
                shifted_category = True
            out[spec.name] = rng.choice(names, rows, p=shares / shares.sum()).astype(object)
            continue
        assert base.min is not None and base.max is not None
        bounds = np.array([base.min, *base.bin_edges, base.max])
        which = rng.choice(len(base.bin_fractions), rows, p=np.array(base.bin_fractions) / sum(base.bin_fractions))
        values = rng.uniform(bounds[which], bounds[which + 1])
        # A new value falls below the minimum (or above the maximum) of N training values with
        # probability 1 / (N + 1): traffic from the training distribution has a few such values.
        tail = rng.random(rows)
        spread = 0.1 * (base.std or 1.0)
        low, high = tail < 1 / (base.count + 1), tail > 1 - 1 / (base.count + 1)
        values[low] = base.min - rng.exponential(spread, int(low.sum()))
        values[high] = base.max + rng.exponential(spread, int(high.sum()))
        if not shifted_number:
            values = values + 0.5 * (base.std or 0.0)
            shifted_number = True
        total = base.count + base.missing
        values[rng.random(rows) < (base.missing / total if total else 0.0)] = np.nan  # as often as in training
        out[spec.name] = values
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", type=Path, default=ROOT / "examples" / "churn-classifier")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "drift-example")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "img" / "drift-report.png")
    args = parser.parse_args()
    import pandas as pd

    args.out.mkdir(parents=True, exist_ok=True)
    rows = args.out / "shifted.csv"
    pd.DataFrame(sample(args.package, args.rows, np.random.default_rng(11))).to_csv(rows, index=False)
    report = args.out / "report.html"
    subprocess.run([sys.executable, "-c", "from model_packages.cli import main; main()", "drift", "report",
                    str(args.package), str(rows), "--out", str(report)], check=True)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found (apt-get install -y chromium): no screenshot", file=sys.stderr)
        return 1
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={args.out / 'profile'}", f"--screenshot={args.screenshot}",
                    "--window-size=1100,1250", report.as_uri()], check=True, capture_output=True)
    print(f"wrote {report} and {args.screenshot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
