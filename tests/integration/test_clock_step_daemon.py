"""The daemon under a stepped wall clock: StatsD keeps flushing every interval.

Every bucky process reads its wall clock through tests/data/timeshift/sitecustomize.py (the real
time plus an offset read from a file). While StatsD lines arrive, the offset goes to -1 h, then
+1 h (a step of +2 h); flushes are watched on the `--debug` output.
"""

import time
from pathlib import Path

import pytest
from buckyproc import Bucky

pytestmark = pytest.mark.integration

TIMESHIFT = Path(__file__).resolve().parent.parent / "data" / "timeshift"
FLUSH = 1.0


def test_statsd_flushes_through_clock_steps(tmp_path: Path) -> None:
    offset_file = tmp_path / "offset"
    offset_file.write_text("0")
    bucky = Bucky(tmp_path, {"statsd_flush_time": FLUSH}, debug=True,
                  python_path=(str(TIMESHIFT),),
                  env={"BUCKY_TEST_TIME_OFFSET_FILE": str(offset_file)}).start()
    sent = 0
    phases = [(0.0, 4.0), (-3600.0, 6.0), (3600.0, 6.0)]
    real_start = time.time()
    started = time.monotonic()
    try:
        for offset, duration in phases:
            offset_file.write_text(str(offset))
            end = time.monotonic() + duration
            while time.monotonic() < end:
                bucky.send_udp("statsd_port", b"hits:1|c")
                sent += 1
                time.sleep(0.05)
    finally:
        assert bucky.stop() == 0
    elapsed = time.monotonic() - started
    metrics = bucky.metrics()
    points = metrics.get("stats_counts.hits", [])
    assert sum(value for value, _ in points) == sent  # every line once, across both steps

    # One flush per interval all along (the final, partial one included): no hour of silence
    # after the step back, no burst after the step forward.
    assert elapsed / FLUSH - 3 <= len(points) <= elapsed / FLUSH + 2, (len(points), elapsed)
    # Measured inside the daemon on its monotonic clock: never two intervals between flushes.
    lags = [value for value, _ in metrics.get("stats.gauges.statsd.timestamp_lag", [])]
    assert lags and max(abs(x) for x in lags) < 1.5 * FLUSH, lags

    stamps = [stamp for _, stamp in points]
    assert all(s % FLUSH == 0 for s in stamps)
    assert all(a != b for a, b in zip(stamps, stamps[1:], strict=False))
    # The stamps follow the clock the daemon sees: now, an hour back, then an hour ahead.
    shifts = [round((stamp - real_start) / 600) * 600 for stamp in stamps]
    assert shifts[0] == 0 and shifts[-1] == 3600 and -3600 in shifts
    assert shifts == sorted(shifts, key=[0, -3600, 3600].index)
