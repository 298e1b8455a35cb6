"""The one cache of computed answers, for paths, placements and prefixes: two generations.

``TwoGenerationCache(compute, limit, period=...)`` is a dict that fills itself: ``cache[key]``
is ``compute(key)``, computed on the first lookup and remembered. A lookup of a key held is a
plain dict lookup (C level, so ``map(cache.__getitem__, keys)`` costs no Python call per hit):
this is the output's hot path, so nothing else is done on a hit.

Rules:
- Two generations. ``rotate()`` makes the current table the previous one and starts an empty
  one; a miss looks in the previous table before computing, so keys in use carry over and keys
  gone quiet for a whole generation are forgotten: memory comes back after a burst of names.
- A generation ends when it holds `limit` keys (so the cache holds at most 2 * `limit`), and,
  with a `period`, when ``expire(now)`` is called `period` seconds after the last time-based
  rotation. The caller passes `now` (no clock is read here); it checks once per batch.
- `compute` may raise: nothing is stored and the exception reaches the caller.
- A cache of caches (``nested=True``; Graphite paths: host -> name -> path) rotates the inner
  caches it holds with it, so both levels forget together and a carried-over inner cache brings
  only its own keys in use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

CACHE_LIMIT = 250_000  # keys per generation on the output side; two generations are kept
CACHE_GENERATION = 30.0  # seconds; a key unused for 30-60 s is computed again when it returns

_ABSENT = object()


class TwoGenerationCache(dict[K, V], Generic[K, V]):
    """key -> compute(key), computed once while the key stays in use (see the module rules)."""

    __slots__ = ("_compute", "_limit", "_nested", "_period", "_previous", "rotate_at")

    def __init__(self, compute: Callable[[K], V], limit: int | None = CACHE_LIMIT, *,
                 period: float | None = None, now: float = 0.0, nested: bool = False) -> None:
        """`limit`: keys per generation (None: no limit); `period`: seconds per generation for
        ``expire`` (None: never); `now`: when the first period starts."""
        super().__init__()
        self._compute = compute
        self._nested = nested
        self._limit = max(1, limit) if limit is not None else sys.maxsize
        self._period = period if period is not None else math.inf
        self._previous: dict[K, V] = {}
        self.rotate_at = now + self._period  # when expire() next starts a generation

    def __missing__(self, key: K) -> V:
        value = self._previous.get(key, _ABSENT)
        if value is _ABSENT:
            value = self._compute(key)
        if len(self) >= self._limit:
            self.rotate()
        self[key] = value  # type: ignore[assignment]
        return value  # type: ignore[return-value]

    def rotate(self) -> None:
        """Start a new generation now: the current one becomes the previous one."""
        if self._nested:  # the inner caches in use start a new generation too
            for inner in self.values():
                inner.rotate()  # type: ignore[attr-defined]
        self._previous = dict(self)
        self.clear()

    def expire(self, now: float) -> bool:
        """Rotate when `period` has passed since the last time-based rotation; True if it did."""
        if now < self.rotate_at:
            return False
        self.rotate()
        self.rotate_at = now + self._period
        return True

    @property
    def previous(self) -> dict[K, V]:
        """The previous generation (read only: for tests and gauges)."""
        return self._previous

    def entries(self) -> int:
        """Keys held, both generations."""
        return len(self) + len(self._previous)
