"""The Graphite path of a sample, computed once per distinct (host, name) and cached."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from operator import getitem, itemgetter

from bucky.names import NameRules
from bucky.protocol.graphite import clean_path

PATH_CACHE_LIMIT = 250_000  # new paths per generation; two generations are kept
PATH_CACHE_GENERATION = 30.0  # seconds; a name unused for 30-60 s is computed again when it returns

_HOST = itemgetter(0)
_NAME = itemgetter(1)


class PathCache:
    """(host, name) -> cleaned Graphite path + `suffix`, computed once per distinct pair.

    `normalize` (optional) rewrites the cleaned path before the suffix is added (Graphite 1.1
    tagged names, for the cluster router). Two levels, host then name, both dicts filled by
    `__missing__`: looking up a whole batch is then three C-level `map`s with no tuple built per
    sample (the hot path of the relay).
    Two generations: every `generation` seconds (or when PATH_CACHE_LIMIT new paths were
    computed) the current tables become the previous ones and a miss looks there before
    computing. Names still in use carry over; names gone quiet are forgotten after two
    generations, so the cache (and the process) shrinks again after a burst of cardinality.
    """

    def __init__(self, rules: NameRules, suffix: str = "",
                 normalize: Callable[[str], str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 generation: float = PATH_CACHE_GENERATION) -> None:
        self._rules = rules
        self._suffix = suffix
        self._normalize = normalize
        self._clock = clock
        self._generation = generation
        self._hosts = _HostPaths(self)
        self._previous: dict[str | None, dict[str, str]] = {}
        self._rotate_at = clock() + generation
        self.size = 0

    def path(self, host: str | None, name: str) -> str:
        return self._hosts[host][name]

    def for_batch(self, batch: Sequence[tuple]) -> list[str]:
        if self._clock() >= self._rotate_at:
            self._rotate()
        return list(map(getitem, map(self._hosts.__getitem__, map(_HOST, batch)),
                        map(_NAME, batch)))

    def _rotate(self) -> None:
        self._previous = self._hosts
        self._hosts = _HostPaths(self)
        self.size = 0
        self._rotate_at = self._clock() + self._generation

    def _compute(self, host: str | None, name: str) -> str:
        older = self._previous.get(host)
        if older is not None:
            path = older.get(name)
            if path is not None:
                return path
        self.size += 1
        if self.size > PATH_CACHE_LIMIT:  # names churn: stay bounded
            self._rotate()
        path = clean_path(self._rules.statname(host, name))
        if self._normalize is not None:
            path = self._normalize(path)
        return path + self._suffix


class _HostPaths(dict):
    def __init__(self, cache: PathCache) -> None:
        super().__init__()
        self._cache = cache

    def __missing__(self, host: str | None) -> _NamePaths:
        names = self[host] = _NamePaths(self._cache, host)
        return names


class _NamePaths(dict):
    def __init__(self, cache: PathCache, host: str | None) -> None:
        super().__init__()
        self._cache = cache
        self._host = host

    def __missing__(self, name: str) -> str:
        path = self[name] = self._cache._compute(self._host, name)
        return path
