"""Drift in the serving path: tumbling windows (rows or seconds) judged by the calibrated alarm."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model_packages.drift import per_window_alpha
from model_packages.manifest import read_manifest
from model_packages.serving.drift import BUFFER_ROWS, FLUSH_ROWS, KEEP_WINDOWS, DriftConfig, DriftMonitor
from model_packages.serving.metrics import RuntimeMetrics
from model_packages.serving.settings import Settings, SettingsError

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris-classifier"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _training_like(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import load_iris

    data = np.asarray(load_iris(return_X_y=True)[0])
    return data[rng.integers(0, len(data), size=n)]


def _monitor(clock: Clock | None = None, **config: float) -> DriftMonitor:
    options: dict[str, float] = {"window_rows": 1000, "window_seconds": 3600, "min_rows": 100, **config}
    return DriftMonitor(read_manifest(IRIS), DriftConfig(**options),  # type: ignore[arg-type]
                        clock=clock or Clock())


def test_training_like_traffic_closes_quiet_windows_by_count() -> None:
    clock = Clock()
    monitor = _monitor(clock)
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(5):
        for _ in range(50):
            monitor.observe(_training_like(20, rng))
        clock.now += 60
        verdicts.append(monitor.tick())
    assert all(v is not None and v.alarm is False and v.rows == 1000 for v in verdicts)
    assert monitor.windows == 5
    first = verdicts[0]
    assert first is not None
    assert set(first.features) == {"sepal_length", "sepal_width", "petal_length", "petal_width"}
    # A count-closed window of 60 s is tested at 60 s / 30 days: false alarms per unit of time stay put.
    assert first.alpha == pytest.approx(per_window_alpha(30, 60))


def test_shifted_feature_alarms_and_is_named() -> None:
    monitor = _monitor()
    rng = np.random.default_rng(2)
    for _ in range(50):
        rows = _training_like(20, rng)
        rows[:, 2] += 1.0  # petal length shifted by 1 cm
        monitor.observe(rows)
    verdict = monitor.tick()
    assert verdict is not None and verdict.alarm is True and verdict.statistic >= 1
    drifting = [name for name, score in verdict.features.items() if score.alarm]
    assert "petal_length" in drifting and "sepal_width" not in drifting


def test_time_windows_close_on_the_timer_without_requests_or_scrapes() -> None:
    """Earlier bug: windows closed only when a request arrived or /metrics was read."""
    monitor = _monitor(time.monotonic, window_seconds=1.0)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    monitor.observe(_training_like(20, rng))
    for _ in range(10):
        monitor.observe(_training_like(20, rng))
    monitor.start()
    try:
        deadline = time.monotonic() + 15
        while monitor.windows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        monitor.stop()
    verdict, windows, _, _ = monitor.snapshot()
    assert windows >= 1 and verdict is not None and verdict.rows == 220 and verdict.alarm is False


def test_a_window_with_too_few_rows_stays_open_until_it_has_them() -> None:
    clock = Clock()
    monitor = _monitor(clock)
    rng = np.random.default_rng(4)
    monitor.observe(_training_like(20, rng))
    clock.now += 4000
    assert monitor.tick() is None and monitor.windows == 0
    assert monitor.snapshot()[2] == 20
    for _ in range(5):
        monitor.observe(_training_like(20, rng))
    verdict = monitor.tick()
    assert verdict is not None and verdict.rows == 120
    assert verdict.alpha == pytest.approx(per_window_alpha(30, 4000))  # tested over its whole duration


def test_an_idle_window_restarts_its_clock() -> None:
    clock = Clock()
    monitor = _monitor(clock)
    clock.now += 7200
    assert monitor.tick() is None
    for _ in range(10):
        monitor.observe(_training_like(20, np.random.default_rng(5)))
    clock.now += 3600
    verdict = monitor.tick()
    assert verdict is not None and verdict.alpha == pytest.approx(per_window_alpha(30, 3600))


def test_one_big_request_cannot_decide_a_window() -> None:
    """Attack a15: one huge request fills at most 2% of a window (an even sample of its rows)."""
    monitor = _monitor(window_rows=5000)
    rng = np.random.default_rng(6)
    monitor.observe(np.tile([7.9, 2.0, 6.9, 2.5], (6000, 1)))
    monitor.flush()
    assert monitor.cumulative[0].sum() == 100
    for _ in range(245):
        monitor.observe(_training_like(20, rng))
    verdict = monitor.tick()
    assert verdict is not None and verdict.rows == 5000
    assert all(score.psi < 0.25 for score in verdict.features.values())


def test_memory_is_bounded_whatever_the_traffic() -> None:
    """Attack a16: scrapes or tiny requests must not grow anything: counters have a fixed shape and
    the buffer never holds more than FLUSH_ROWS rows."""
    monitor = _monitor(window_rows=100_000, min_rows=1)
    row = np.array([[5.1, 3.5, 1.4, 0.2]])
    shape = monitor.cumulative.shape
    for _ in range(5000):
        monitor.observe(row)
        monitor.snapshot()
        assert monitor._pending_rows < FLUSH_ROWS
    monitor.tick()
    assert monitor.cumulative.shape == shape and monitor.snapshot()[2] == 5000


def test_workers_judge_the_sum_of_their_rows_and_report_one_verdict(tmp_path: Path) -> None:
    """Neither worker alone has min_rows; the leader judges the sum once both have published."""
    manifest = read_manifest(IRIS)
    config = DriftConfig(window_rows=1000, window_seconds=3600, min_rows=300)
    clock = Clock()
    leader = DriftMonitor(manifest, config, share_dir=tmp_path, worker=0, clock=clock)
    other = DriftMonitor(manifest, config, share_dir=tmp_path, worker=1, clock=clock)
    rng = np.random.default_rng(7)
    for monitor in (leader, other):
        for _ in range(20):
            rows = _training_like(10, rng)
            rows[:, 2] += 1.5
            monitor.observe(rows)
    assert other.tick() is None  # publishes; only the leader judges
    clock.now += 3600
    verdict = leader.tick()
    assert verdict is not None and verdict.rows == 400 and verdict.alarm is True
    seen, windows, _, _ = other.snapshot()  # the other worker serves the leader's verdict
    assert windows == 1 and seen is not None and seen.alarm is True and seen.rows == 400
    # The next window starts from the sum at the close: old rows are not counted again.
    for _ in range(40):
        other.observe(_training_like(10, rng))
    other.tick()
    clock.now += 3600
    verdict = leader.tick()
    assert verdict is not None and verdict.rows == 400 and verdict.alarm is False


def test_drift_off_counts_nothing() -> None:
    monitor = _monitor()
    off = DriftMonitor(read_manifest(IRIS), DriftConfig(enabled=False))
    off.observe(np.ones((5, 4)))
    assert not off.enabled and off.tick() is None and off.cumulative.sum() == 0
    assert monitor.enabled
    assert Settings.from_env({"KAIZEN_DRIFT": "off"}).drift.enabled is False


def test_settings_read_the_drift_variables() -> None:
    drift = Settings.from_env({"KAIZEN_DRIFT_FALSE_ALARM_DAYS": "7", "KAIZEN_DRIFT_WINDOW_SECONDS": "600",
                               "KAIZEN_DRIFT_WINDOW_ROWS": "2000", "KAIZEN_DRIFT_MIN_ROWS": "50"}).drift
    assert (drift.false_alarm_days, drift.window_seconds, drift.window_rows, drift.min_rows) == (7, 600, 2000, 50)
    assert drift.alpha == pytest.approx(600 / (7 * 86_400))
    default = Settings.from_env({}).drift
    assert (default.enabled, default.false_alarm_days, default.window_seconds, default.window_rows,
            default.min_rows) == (True, 30, 3600, 5000, 100)


@pytest.mark.parametrize(("name", "value"), [
    ("KAIZEN_DRIFT_WINDOW_SECONDS", "1e-300"), ("KAIZEN_DRIFT_WINDOW_SECONDS", "nan"), ("KAIZEN_DRAIN_SECONDS", "nan"),
    ("KAIZEN_DRAIN_SECONDS", "inf"), ("KAIZEN_DRIFT_WINDOW_ROWS", "-5"), ("KAIZEN_DRIFT_WINDOW_ROWS", "10000000"),
    ("KAIZEN_DRIFT_FALSE_ALARM_DAYS", "0"), ("KAIZEN_DRIFT_FALSE_ALARM_DAYS", "0.001"), ("KAIZEN_DRIFT", "maybe"),
    ("KAIZEN_KEEPALIVE_TIMEOUT", "0"), ("KAIZEN_WORKERS", "-1"),
])
def test_absurd_settings_are_refused(name: str, value: str) -> None:
    """a22: 1e-300 made an idle server spin a core; nan turned features off silently."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_min_rows_above_the_window_and_alarms_more_often_than_every_other_window_are_refused() -> None:
    with pytest.raises(SettingsError, match="KAIZEN_DRIFT_MIN_ROWS"):
        Settings.from_env({"KAIZEN_DRIFT_WINDOW_ROWS": "100", "KAIZEN_DRIFT_MIN_ROWS": "500"})
    with pytest.raises(SettingsError, match="KAIZEN_DRIFT_FALSE_ALARM_DAYS"):
        Settings.from_env({"KAIZEN_DRIFT_WINDOW_SECONDS": "86400", "KAIZEN_DRIFT_FALSE_ALARM_DAYS": "1"})


def test_a_window_overfilled_between_ticks_is_judged_on_window_rows_rows() -> None:
    """Heavy traffic: every row up to the tick lands in the window; the test takes a uniform subset
    of window_rows rows, so its tables and cost stay bounded (and the verdict still sees drift)."""
    monitor = _monitor(window_rows=1000)
    rng = np.random.default_rng(8)
    for _ in range(200):
        rows = _training_like(20, rng)
        rows[:, 2] += 1.0
        monitor.observe(rows)
    verdict = monitor.tick()
    assert verdict is not None and verdict.rows == 1000 and verdict.alarm is True
    assert monitor.cumulative[0].sum() == 4000
    assert list(monitor.state._calibrations) == [1000]


def test_heavy_traffic_bins_a_bounded_random_share_of_requests() -> None:
    """Far more rows per tick than a window is judged on: after one tick of it, requests are kept by
    a coin at KEEP_WINDOWS windows per tick (binning costs bounded CPU), windows still close on
    window_rows rows every tick, quiet traffic stays quiet and a shift is still seen."""
    clock = Clock()
    monitor = _monitor(clock, window_rows=1000)
    rng = np.random.default_rng(9)
    for _ in range(1000):  # 20,000 rows in the first second: 20 windows' worth
        monitor.observe(_training_like(20, rng))
    clock.now += 1.0
    first = monitor.tick()
    assert first is not None and first.rows == 1000 and not first.alarm
    assert monitor.keep == pytest.approx(KEEP_WINDOWS * 1000 / 20_000)
    binned = int(monitor.cumulative[0].sum())
    verdicts = []
    for shift in (0.0, 0.0, 0.0, 1.0):
        for _ in range(1000):
            rows = _training_like(20, rng)
            rows[:, 2] += shift
            monitor.observe(rows)
        clock.now += 1.0
        verdicts.append(monitor.tick())
        kept = int(monitor.cumulative[0].sum()) - binned
        binned += kept
        assert 0.6 * KEEP_WINDOWS * 1000 < kept < 1.4 * KEEP_WINDOWS * 1000  # about 2,000 of 20,000 rows
    assert all(v is not None and v.rows == 1000 for v in verdicts)
    assert [v.alarm for v in verdicts if v is not None] == [False, False, False, True]
    for _ in range(10):  # traffic falls back: every request is binned again
        monitor.observe(_training_like(20, rng))
    clock.now += 1.0
    monitor.tick()
    assert monitor.keep == 1.0


def _wait(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)
    return bool(condition())  # type: ignore[operator]


def test_a_request_thread_never_bins_rows_while_the_drift_thread_runs() -> None:
    """Binning (DriftState.count) once ran on the request that filled FLUSH_ROWS: with the drift
    thread running, requests only append to the buffer and wake it."""
    monitor = _monitor(window_rows=5000)
    binned_by: list[str] = []
    count = monitor.state.count

    def recording(*args: object, **kwargs: object) -> np.ndarray:
        binned_by.append(threading.current_thread().name)
        return count(*args, **kwargs)  # type: ignore[arg-type]

    monitor.state.count = recording  # type: ignore[method-assign]
    rng = np.random.default_rng(9)
    sent = 0
    monitor.start()
    try:
        for _ in range(3 * FLUSH_ROWS // 20):
            monitor.observe(_training_like(20, rng))
            sent += 20
        assert _wait(lambda: monitor.cumulative[0].sum() + monitor.dropped_rows == sent)
    finally:
        monitor.stop()
    assert monitor.dropped_rows == 0 and monitor.cumulative[0].sum() == sent
    assert binned_by and set(binned_by) == {"kaizen-drift"}


def test_a_full_buffer_drops_and_counts_rows_instead_of_binning_on_the_request() -> None:
    """Constant memory while the drift thread is held up: the buffer stops at BUFFER_ROWS, the
    rest is dropped and counted (kaizen_drift_dropped_rows), and nothing blocks the request."""
    monitor = _monitor(window_rows=100_000)
    metrics = RuntimeMetrics()
    metrics.model_loaded(read_manifest(IRIS), monitor)
    entered, release = threading.Event(), threading.Event()
    count = monitor.state.count

    def held(*args: object, **kwargs: object) -> np.ndarray:
        entered.set()
        release.wait(20)
        return count(*args, **kwargs)  # type: ignore[arg-type]

    monitor.state.count = held  # type: ignore[method-assign]
    rng = np.random.default_rng(10)
    batch = 1024
    monitor.start()
    try:
        for _ in range(FLUSH_ROWS // batch):
            monitor.observe(_training_like(batch, rng))
        assert entered.wait(20)  # the drift thread took the first FLUSH_ROWS rows and is held
        for _ in range(BUFFER_ROWS // batch):
            monitor.observe(_training_like(batch, rng))
        started = time.monotonic()
        monitor.observe(_training_like(batch, rng))
        assert time.monotonic() - started < 1.0
        assert monitor.dropped_rows == batch and monitor._pending_rows == BUFFER_ROWS
        release.set()
        assert _wait(lambda: monitor.cumulative[0].sum() == FLUSH_ROWS + BUFFER_ROWS)
    finally:
        release.set()
        monitor.stop()
    assert f"kaizen_drift_dropped_rows_total {float(batch)}" in metrics.render().decode()
