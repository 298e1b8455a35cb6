"""Hot timers: values kept in array('d'), big ones sorted in chunks and merged; the statistics
must be bit-identical to the straightforward sorted-list computation (the reference's order of
summation), on both sides of the chunk size."""

from __future__ import annotations

import math
import random
from array import array
from functools import reduce
from itertools import accumulate
from operator import add

import pytest

from bucky.aggregate import statsd as statsd_module
from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings, js_round, sorted_values

T0 = 1_700_000_000.0


def straightforward(values: list[float], pcts: tuple[float, ...]) -> dict[str, float]:
    """process_metrics.js, transcribed with full lists (what the aggregator did before)."""
    v = sorted(values)
    n = len(v)
    cum = list(accumulate(v))
    cum2 = list(accumulate([x * x for x in v]))
    out: dict[str, float] = {}
    for pct in pcts:
        within = js_round(abs(pct) / 100 * n)
        if within == 0:
            continue
        clean = str(pct).replace(".", "_").replace("-", "top")
        if pct > 0:
            out[f"upper_{clean}"] = v[within - 1]
            part, part2 = cum[within - 1], cum2[within - 1]
        else:
            out[f"lower_{clean}"] = v[n - within]
            before = n - within - 1
            part = cum[-1] - (cum[before] if before >= 0 else 0.0)
            part2 = cum2[-1] - (cum2[before] if before >= 0 else 0.0)
        out[f"sum_{clean}"] = part
        out[f"sum_squares_{clean}"] = part2
        out[f"mean_{clean}"] = part / within
        out[f"count_{clean}"] = within
    mean = cum[-1] / n
    out["mean"] = mean
    out["sum"] = cum[-1]
    out["sum_squares"] = cum2[-1]
    out["std"] = math.sqrt(reduce(add, [(x - mean) * (x - mean) for x in v]) / n)
    out["upper"], out["lower"] = v[-1], v[0]
    mid = n // 2
    out["median"] = v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 2 * 65536 + 17])
@pytest.mark.parametrize("chunk", [7, 65536])
def test_big_timer_statistics_are_bit_identical(n: int, chunk: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(statsd_module, "_SORT_CHUNK", chunk)
    monkeypatch.setattr(statsd_module, "_SMALL_TIMER", chunk)
    rng = random.Random(n * 31 + chunk)
    # Awkward values: wide magnitudes (sums depend on order), duplicates, negatives.
    values = [rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 1e-3, 42.0, 1e15 * rng.random()])
              for _ in range(n)]
    pcts = (90, 99.9, -10, 50)
    agg = StatsdAggregator(StatsdSettings(flush_time=10.0, percentile_thresholds=pcts))
    agg.tick(T0, 0.0)
    for x in values:
        agg.timer("t", x, 1.0, None, None)  # type: ignore[arg-type]
    got = {s[1].removeprefix("stats.timers.t."): s[2] for s in agg.tick(T0 + 10, 10.0)
           if s[1].startswith("stats.timers.t.")}
    want = straightforward(values, pcts)
    for name, value in want.items():
        assert got[name] == value or (math.isnan(value) and math.isnan(got[name])), name


def test_sorted_values_merges_chunks() -> None:
    rng = random.Random(5)
    values = array("d", (rng.uniform(-5, 5) for _ in range(3 * 65536 + 5)))
    expect = sorted(values)
    ordered = sorted_values(values)
    assert isinstance(ordered, array) and list(ordered) == expect


def test_a_hot_timer_costs_about_16_bytes_a_value() -> None:
    """Memory, not time: what the aggregator holds per value, and its peak during the flush."""
    import tracemalloc

    n = 300_000  # above _SMALL_TIMER: the chunked path
    rng = random.Random(3)
    lines = [f"t:{rng.random() * 1000.0!r}|ms".encode() for _ in range(n)]
    agg = StatsdAggregator(StatsdSettings(flush_time=10.0, percentile_thresholds=(90, 99.9)))
    agg.tick(T0, 0.0)
    tracemalloc.start()
    try:
        for i in range(0, n, 50):
            agg.ingest_lines(lines[i : i + 50], T0 + 1, 1.0)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = agg.tick(T0 + 10, 10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert next(s[2] for s in out if s[1] == "stats.timers.t.count") == n
    # The parser's memos are bounded, so they add a constant (well under 1 MB here).
    assert held / n < 10, held / n
    assert (peak - held) / n < 10, (peak - held) / n  # the merged copy, plus one chunk
