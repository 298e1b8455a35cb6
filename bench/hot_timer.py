"""One StatsD timer key receiving N distinct values in one interval: memory and flush time.

Feeds the real aggregator (bucky.aggregate.statsd) with datagrams of `t:<value>|ms` lines, as the
StatsD input would, and reports from /proc/self/status: the RSS growth while the values are held
(bytes per value), the peak RSS during the flush (VmHWM, reset before the flush through
/proc/self/clear_refs) and the flush's duration.

    python bench/hot_timer.py [--values 1000000] [--per-datagram 50]

With PYTHONPATH pointing at an older tree (3.0: one clock, `tick(now)`) it measures that one.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings

T0 = 1_700_000_000.0


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def _call(method, now: float, mono: float, *args):  # type: ignore[no-untyped-def]
    try:
        return method(*args, now, mono)
    except TypeError:  # Bucky 3.0: one clock
        return method(*args, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--per-datagram", type=int, default=50)
    args = parser.parse_args()
    n, per = args.values, args.per_datagram

    rng = random.Random(1)
    # The datagrams are built in batches and dropped at once: only the aggregator's state stays.
    agg = StatsdAggregator(StatsdSettings(flush_time=10.0, percentile_thresholds=(90, 99, 99.9)))
    _call(agg.tick, T0, 0.0)
    gc.collect()
    base = status_kb("VmRSS")
    sent = 0
    started = time.perf_counter()
    while sent < n:
        k = min(per, n - sent)
        lines = [f"t:{rng.random() * 1000.0!r}|ms" for _ in range(k)]
        _call(agg.ingest, T0 + 1, 1.0, "\n".join(lines).encode())
        sent += k
    ingest_s = time.perf_counter() - started
    gc.collect()
    held = status_kb("VmRSS") - base
    reset_peak()
    started = time.perf_counter()
    samples = _call(agg.tick, T0 + 10, 10.0)
    flush_s = time.perf_counter() - started
    peak = status_kb("VmHWM") - base
    count = next(s[2] for s in samples if s[1] == "stats.timers.t.count")
    assert count == n, count

    print(f"values                     {n}")
    print(f"ingest                     {ingest_s:.2f} s ({n / ingest_s:,.0f} values/s)")
    print(f"RSS growth while held      {held / 1024:.1f} MB ({held * 1024 / n:.1f} bytes/value)")
    print(f"peak RSS growth at flush   {peak / 1024:.1f} MB ({peak * 1024 / n:.1f} bytes/value)")
    print(f"flush                      {flush_s:.2f} s")


if __name__ == "__main__":
    main()
