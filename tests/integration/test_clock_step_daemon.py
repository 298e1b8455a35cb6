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
                  env={"PYTHONPATH": str(TIMESHIFT),
                       "BUCKY_TEST_TIME_OFFSET_FILE": str(offset_file)}).start()
    seen = 0
    arrivals: list[tuple[float, float, float, float]] = []  # (mono, real wall, value, stamp)
    sent = 0
    phases = [(0.0, 4.0), (-3600.0, 6.0), (3600.0, 6.0)]
    try:
        for offset, duration in phases:
            offset_file.write_text(str(offset))
            end = time.monotonic() + duration
            while time.monotonic() < end:
                bucky.send_udp("statsd_port", b"hits:1|c")
                sent += 1
                time.sleep(0.05)
                points = bucky.metrics().get("stats_counts.hits", [])
                for value, stamp in points[seen:]:
                    arrivals.append((time.monotonic(), time.time(), value, stamp))
                seen = len(points)
    finally:
        assert bucky.stop() == 0
    points = bucky.metrics().get("stats_counts.hits", [])
    total = sum(value for value, _ in points)
    assert total == sent  # every line counted once, across both steps and the final flush

    times = [a[0] for a in arrivals]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(arrivals) >= sum(d for _, d in phases) / FLUSH - 4
    assert max(gaps) < 2.5 * FLUSH, gaps  # never silent
    assert min(gaps) > 0.3 * FLUSH, gaps  # never a burst
    stamps = [a[3] for a in arrivals]
    assert all(s % FLUSH == 0 for s in stamps)
    assert all(a != b for a, b in zip(stamps, stamps[1:], strict=False))
    # The stamps follow the clock the daemon sees: an hour back, then an hour ahead.
    shifts = [round((stamp - wall) / 600) * 600 for _, wall, _, stamp in arrivals]
    assert shifts[0] == 0 and shifts[-1] == 3600 and -3600 in shifts
    assert shifts == sorted(shifts, key=[0, -3600, 3600].index)
