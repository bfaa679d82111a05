"""Detection delay in rows: the calibrated alarm against a fixed PSI 0.1 rule and river's ADWIN/KSWIN.

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/drift/delays.py [--seeds 20] [--no-river]

Scenarios (the issue's): (a) a 0.25-sigma mean shift in 1 of 20 standard-normal features, (b) one
category's share moving from 10% to 20% (a categorical feature beside 19 numeric ones), (c) the
variance of 1 of 20 features doubling. The baseline is built the way packages build it (deciles of
10,000 training rows). Each run starts with a random number of baseline rows (the change falls
anywhere inside a window), then the changed stream; the delay is the number of changed rows seen
when the method first alarms (an alarm before the change counts as a false alarm, not a
detection). Each method also runs on a null stream of the same length per seed: its false
alarms per 100,000 null rows say what its delays cost (the calibrated alarm: 30 windows of 1,000
rows at alpha 1/720, about 0.14 per 100k rows). Windows: 1,000 rows, tested at alpha = 1/720
(one false alarm per 30 days of hourly windows). The PSI rule alarms when any feature's PSI on the
same windows exceeds 0.1. ADWIN (delta 0.002) watches every feature (a categorical one as one
0/1 stream per category); KSWIN (alpha 0.005, window 100) watches the numeric features on every
`--kswin-every`-th row (it is slow per row), so its delays are in stream rows too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model_packages.baseline import compute_baseline
from model_packages.drift import DriftState, per_window_alpha
from model_packages.drift.counters import categorical_layout, numeric_layout
from model_packages.manifest import FeatureSpec

FEATURES = 20
WINDOW = 1000
MAX_ROWS = 30_000
CATEGORIES = ["a", "b", "c", "d", "e"]
BASE_SHARES = np.array([0.1, 0.2, 0.2, 0.25, 0.25])
SHIFTED_SHARES = np.concatenate([[0.2], BASE_SHARES[1:] * 0.8 / BASE_SHARES[1:].sum()])


def _layouts(categorical: bool, rng: np.random.Generator) -> list[Any]:
    train = rng.normal(size=(10_000, FEATURES))
    columns: dict[str, Any] = {f"x{j}": train[:, j] for j in range(FEATURES)}
    specs = [FeatureSpec(name=f"x{j}") for j in range(FEATURES)]
    if categorical:
        columns["x0"] = rng.choice(np.array(CATEGORIES, dtype=object), p=BASE_SHARES, size=10_000)
        specs[0] = FeatureSpec(name="x0", dtype="categorical", categories=CATEGORIES)
    baseline = compute_baseline(columns, specs)
    layouts = []
    for j, spec in enumerate(specs):
        base = baseline.features[spec.name]
        layout = categorical_layout(spec.name, j, base, CATEGORIES) if spec.dtype == "categorical" \
            else numeric_layout(spec.name, j, base)
        layouts.append(layout)
    return layouts


def _rows(scenario: str, n: int, shifted: bool, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(n, FEATURES)).astype(object if scenario == "category" else np.float64)
    if scenario == "category":
        x[:, 0] = rng.choice(np.array(CATEGORIES, dtype=object), p=SHIFTED_SHARES if shifted else BASE_SHARES, size=n)
    elif shifted and scenario == "mean":
        x[:, 0] = x[:, 0] + 0.25
    elif shifted and scenario == "variance":
        x[:, 0] = x[:, 0] * np.sqrt(2.0)
    return x


def _stream(scenario: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    before = int(rng.integers(0, WINDOW))
    rows = np.concatenate([_rows(scenario, before, False, rng), _rows(scenario, MAX_ROWS, True, rng)])
    return rows, before


def windowed(state: DriftState, rows: np.ndarray, change: int, method: str, alpha: float,
             count_all: bool = False) -> tuple[int | None, int]:
    """(delay in changed rows or None, false alarms before the change) for a windowed method;
    `count_all`: count every alarm of the stream (a null stream: change beyond its end)."""
    false_alarms = 0
    for start in range(0, rows.shape[0] - WINDOW + 1, WINDOW):
        counts = state.count(rows[start:start + WINDOW])
        if method == "calibrated":
            alarm = bool(state.evaluate(alpha, counts=counts).alarm)
        else:
            alarm = any(s.psi > 0.1 for s in state.scores(alpha, counts).values())
        end = start + WINDOW
        if alarm and (end <= change or count_all):
            false_alarms += 1
        elif alarm:
            return end - change, false_alarms
    return None, false_alarms


def river_delay(rows: np.ndarray, change: int, scenario: str, kind: str, every: int,
                count_all: bool = False) -> tuple[int | None, int]:
    from river import drift

    def make() -> Any:
        return drift.ADWIN(delta=0.002) if kind == "adwin" else drift.KSWIN(alpha=0.005, window_size=100,
                                                                            stat_size=30, seed=1)

    numeric = list(range(1 if scenario == "category" else 0, FEATURES))
    detectors: list[tuple[Any, Any]] = [(make(), j) for j in numeric]
    if scenario == "category" and kind == "adwin":
        detectors += [(make(), ("cat", c)) for c in CATEGORIES]
    false_alarms = 0
    step = 1 if kind == "adwin" else every
    for i in range(0, rows.shape[0], step):
        row = rows[i]
        for detector, key in detectors:
            value = float(row[0] == key[1]) if isinstance(key, tuple) else float(row[key])
            detector.update(value)
            if detector.drift_detected:
                if i < change or count_all:
                    false_alarms += 1
                else:
                    return i + 1 - change, false_alarms
    return None, false_alarms


def summary(delays: list[int | None]) -> dict[str, Any]:
    found = [d for d in delays if d is not None]
    missed = len(delays) - len(found)
    if len(found) <= len(delays) // 2:
        return {"median": f">{MAX_ROWS}", "p90": f">{MAX_ROWS}", "missed": missed}
    padded = np.array([d if d is not None else np.inf for d in delays], dtype=float)
    p90 = float(np.quantile(padded, 0.9))
    return {"median": int(np.median(padded)), "p90": int(p90) if np.isfinite(p90) else f">{MAX_ROWS}",
            "missed": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--river-seeds", type=int, default=3, help="seeds for ADWIN/KSWIN (slow per row)")
    parser.add_argument("--kswin-every", type=int, default=10)
    parser.add_argument("--no-river", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    alpha = per_window_alpha(30, 3600)
    results: dict[str, dict[str, Any]] = {}
    for scenario in ("mean", "category", "variance"):
        started = time.perf_counter()
        state = DriftState(_layouts(scenario == "category", np.random.default_rng(0)))
        delays: dict[str, list[int | None]] = {"calibrated": [], "psi>0.1": [], "adwin": [], "kswin": []}
        false_alarms = dict.fromkeys(delays, 0)
        null_alarms = dict.fromkeys(delays, 0)
        null_rows = dict.fromkeys(delays, 0)
        for seed in range(args.seeds):
            rows, change = _stream(scenario, np.random.default_rng(100 + seed))
            null = _rows(scenario, MAX_ROWS, False, np.random.default_rng(900 + seed))
            for method in ("calibrated", "psi>0.1"):
                delay, fa = windowed(state, rows, change, method, alpha)
                delays[method].append(delay)
                false_alarms[method] += fa
                null_alarms[method] += windowed(state, null, MAX_ROWS, method, alpha, count_all=True)[1]
                null_rows[method] += MAX_ROWS
            if not args.no_river and seed < args.river_seeds:
                for kind in ("adwin", "kswin"):
                    delay, fa = river_delay(rows, change, scenario, kind, args.kswin_every)
                    delays[kind].append(delay)
                    false_alarms[kind] += fa
                    null_alarms[kind] += river_delay(null, MAX_ROWS, scenario, kind, args.kswin_every,
                                                     count_all=True)[1]
                    null_rows[kind] += MAX_ROWS
        results[scenario] = {m: {**summary(d), "runs": len(d), "false_alarms_before_change": false_alarms[m],
                                 "false_alarms_per_100k_null_rows": round(1e5 * null_alarms[m] / null_rows[m], 2)}
                             for m, d in delays.items() if d}
        print(f"{scenario}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    names = {"mean": "(a) 0.25-sigma mean shift, 1 of 20", "category": "(b) category share 10% -> 20%",
             "variance": "(c) variance x2, 1 of 20"}
    print(f"\nDetection delay in rows after the change (windows of {WINDOW} rows, alpha {alpha:.2e} per window)\n")
    print("| scenario | method | median | p90 | missed | runs | false alarms per 100k null rows |")
    print("|---|---|---|---|---|---|---|")
    for scenario, by_method in results.items():
        for method, r in by_method.items():
            print(f"| {names[scenario]} | {method} | {r['median']} | {r['p90']} | {r['missed']} | {r['runs']} | "
                  f"{r['false_alarms_per_100k_null_rows']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
