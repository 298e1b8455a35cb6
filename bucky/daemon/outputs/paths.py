"""The Graphite path of a sample, computed once per distinct (host, name) and cached.

Rules: the cache is ``bucky.cache.TwoGenerationCache`` at two levels, host then name, so a batch
is looked up with three C-level ``map``s and no tuple built per sample (the hot path of the
relay). Both levels rotate together: every `generation` seconds, or when CACHE_LIMIT new paths
were computed, so the cache (and the process) shrinks again after a burst of cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from operator import getitem, itemgetter

from bucky.cache import CACHE_GENERATION, CACHE_LIMIT, TwoGenerationCache
from bucky.names import NameRules
from bucky.protocol.graphite import clean_path

_HOST = itemgetter(0)
_NAME = itemgetter(1)


class PathCache:
    """(host, name) -> cleaned Graphite path + `suffix`, computed once per distinct pair.

    `normalize` (optional) rewrites the cleaned path before the suffix is added (Graphite 1.1
    tagged names, for the cluster router). Names still in use carry over from one generation to
    the next; names gone quiet are forgotten after two generations.
    """

    def __init__(self, rules: NameRules, suffix: str = "",
                 normalize: Callable[[str], str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 generation: float = CACHE_GENERATION) -> None:
        self._rules = rules
        self._suffix = suffix
        self._normalize = normalize
        self._clock = clock
        # host -> (name -> path); the count of new paths (`size`) bounds both levels at once
        self._hosts: TwoGenerationCache[str | None, TwoGenerationCache[str, str]] = (
            TwoGenerationCache(self._names_of, None, period=generation, now=clock(), nested=True))
        self.size = 0  # paths computed in this generation

    def path(self, host: str | None, name: str) -> str:
        return self._hosts[host][name]

    def for_batch(self, batch: Sequence[tuple]) -> list[str]:
        if self._hosts.expire(self._clock()):
            self.size = 0
        return list(map(getitem, map(self._hosts.__getitem__, map(_HOST, batch)),
                        map(_NAME, batch)))

    def _names_of(self, host: str | None) -> TwoGenerationCache[str, str]:
        return TwoGenerationCache(partial(self._compute, host), None)

    def _compute(self, host: str | None, name: str) -> str:
        self.size += 1
        if self.size > CACHE_LIMIT:  # names churn: stay bounded
            self._hosts.rotate()
            self.size = 1  # this path, the first of the new generation
        path = clean_path(self._rules.statname(host, name))
        if self._normalize is not None:
            path = self._normalize(path)
        return path + self._suffix
