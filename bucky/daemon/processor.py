"""The processor stage's logic: Bucky 2's processor(host, name, value, timestamp) contract.

The user's function gets each sample once and returns a 4-item sequence (the sample, changed or
not) or None (filtered out). Whatever it raises is counted and logged (rate-limited); the sample
then passes unchanged, or is dropped with `processor_drop_on_error`. A result that is not a
4-item sequence is dropped and counted. The process around it is ProcessorRunner
(bucky.daemon.processor_runner); this class holds no I/O, so its tests call it directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import starmap

from bucky.ratelog import RateLimitedLog


class Processor:
    def __init__(self, fn: Callable[..., object], drop_on_error: bool,
                 ratelog: RateLimitedLog) -> None:
        self.fn = fn
        self.drop_on_error = drop_on_error
        self.ratelog = ratelog
        self.counters: Counter[str] = Counter()

    def process(self, batch: list[tuple]) -> list[tuple]:
        """Run the user's function over a batch; each sample is seen exactly once.

        `list.extend(starmap(...))` runs the loop in C. When the function raises, extend stops
        with the results so far kept, so the failing sample is at index len(results); it gets a
        placeholder (itself, or None when errors drop) and extend resumes after it."""
        results: list = []
        calls = starmap(self.fn, batch)
        errors = 0
        while True:
            try:
                results.extend(calls)
                break
            except Exception as exc:
                failed = batch[len(results)]
                errors += 1
                self._error(failed, exc)
                results.append(None if self.drop_on_error else failed)
        out = [r for r in results if r is not None]
        n = len(batch)
        filtered = n - len(out) - (errors if self.drop_on_error else 0)
        if errors and self.drop_on_error:
            self.counters["dropped.error"] += errors
        if out and (set(map(type, out)) != {tuple} or set(map(len, out)) != {4}):
            out, bad = self._checked(out)
            errors += bad
            self.counters["dropped.bad_result"] += bad
        counters = self.counters
        counters["received"] += n
        counters["errors"] += errors
        counters["filtered"] += filtered
        return out

    def _checked(self, results: list) -> tuple[list[tuple], int]:
        good, bad = [], 0
        for result in results:
            try:
                sample = tuple(result)
                if len(sample) != 4:
                    raise TypeError(f"processor returned {len(sample)} items, expected 4")
            except Exception as exc:
                bad += 1
                self._error(result, exc)
                continue
            good.append(sample)
        return good, bad

    def _error(self, sample: object, exc: Exception) -> None:
        self.ratelog.error("processor", "processor failed on %r: %s: %s", sample,
                           exc.__class__.__name__, exc)

