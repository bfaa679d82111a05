"""False alarms per simulated month of the calibrated alarm, on null streams (configured: 1/month).

    .venv/bin/python bench/drift/false_alarms.py [--seeds 20 --months 4]

The protocol of tests/drift/test_calibration.py: each seed is one deployment (20 features, 16
numeric with 0.5% missing and 4 categorical; a baseline computed from `training` rows drawn from
the true distribution), then `months` of hourly windows of `rows` rows from the same distribution,
tested at alpha = 1/720. Prints the mean and the spread over deployments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model_packages.drift import per_window_alpha
from tests.drift.test_calibration import _deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--months", type=int, default=4)
    args = parser.parse_args()
    alpha = per_window_alpha(30, 3600)
    print("| window rows | training rows | false alarms / month (mean over deployments) | median | max |")
    print("|---|---|---|---|---|")
    out = []
    for rows, training in ((200, 10_000), (2000, 10_000), (5000, 10_000), (5000, 2000)):
        rates = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 + seed)
            state, truth = _deployment(training, rng)
            windows = state.null_counts(rows, 720 * args.months, rng, truth)
            rates.append(float(state.alarms(alpha, windows).sum()) / args.months)
        out.append({"rows": rows, "training": training, "mean": round(float(np.mean(rates)), 2),
                    "median": float(np.median(rates)), "max": max(rates)})
        print(f"| {rows} | {training} | {np.mean(rates):.2f} | {np.median(rates):.2f} | {max(rates):.2f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
