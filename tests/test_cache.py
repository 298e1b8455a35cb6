"""bucky.cache.TwoGenerationCache: computed once per key while in use, bounded, forgetting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bucky.cache import CACHE_GENERATION, CACHE_LIMIT, TwoGenerationCache


def counting(log: list, answer: Callable[[Any], Any] = lambda key: f"<{key}>",
             ) -> Callable[[Any], Any]:
    """`answer`, recording each key it is computed for in `log`."""
    def compute(key: Any) -> Any:
        log.append(key)
        return answer(key)
    return compute


def test_output_side_defaults_are_what_the_readme_says() -> None:
    assert CACHE_LIMIT == 250_000 and CACHE_GENERATION == 30.0  # README "Graphite clusters"


def test_computed_once_then_a_plain_dict_lookup() -> None:
    computed: list = []
    cache = TwoGenerationCache(counting(computed))
    assert [cache[k] for k in "abab"] == ["<a>", "<b>", "<a>", "<b>"]
    assert list(map(cache.__getitem__, "ba")) == ["<b>", "<a>"]
    assert computed == ["a", "b"]
    assert isinstance(cache, dict) and dict(cache) == {"a": "<a>", "b": "<b>"}


def test_bounded_and_keeps_keys_in_use() -> None:
    computed: list = []
    cache = TwoGenerationCache(counting(computed), 50)  # 50 a generation: 100 at most
    for i in range(1000):
        cache[f"name{i}"]
        cache["busy"]  # in use all along: computed once, carried across generations
        assert cache.entries() <= 100
    assert computed.count("busy") == 1 and len(computed) == 1001


def test_a_period_forgets_keys_gone_quiet_and_keeps_keys_in_use() -> None:
    computed: list = []
    cache = TwoGenerationCache(counting(computed), period=60.0, now=0.0)
    cache["a"], cache["b"]
    assert cache.expire(59.9) is False and len(cache) == 2
    assert cache.expire(61.0) is True  # a new generation: both still found in the previous one
    cache["a"]
    assert cache.rotate_at == 121.0
    assert cache.expire(122.0) is True  # "b" was not used for a whole generation: forgotten
    cache["a"], cache["b"]
    assert computed == ["a", "b", "b"]
    assert "b" not in cache.previous


def test_without_a_period_time_never_rotates() -> None:
    cache = TwoGenerationCache(str)
    cache[1]
    assert cache.expire(1e12) is False and cache == {1: "1"}


def test_falsy_answers_are_remembered_too() -> None:
    computed: list = []
    cache = TwoGenerationCache(counting(computed, lambda key: None if key == "n" else 0))
    cache["n"], cache["z"]
    cache.rotate()
    assert cache["n"] is None and cache["z"] == 0  # carried over, not computed again
    assert computed == ["n", "z"]


def test_a_compute_that_raises_stores_nothing() -> None:
    cache = TwoGenerationCache(lambda key: 1 // key)
    with pytest.raises(ZeroDivisionError):
        cache[0]
    assert 0 not in cache and cache[1] == 1


def test_nested_caches_rotate_together() -> None:
    computed: list = []

    def inner(host: str) -> TwoGenerationCache:
        return TwoGenerationCache(lambda name: computed.append((host, name)) or f"{host}.{name}",
                                  None)

    hosts = TwoGenerationCache(inner, None, nested=True)
    assert hosts["h1"]["a"] == "h1.a" and hosts["h1"]["b"] == "h1.b" and hosts["h2"]["a"] == "h2.a"
    hosts.rotate()
    assert hosts["h1"]["a"] == "h1.a"  # host and name carried over, nothing computed
    hosts.rotate()  # h2 unused for a generation, and h1's "b": both forgotten
    assert "h2" not in hosts.previous and "b" not in hosts.previous["h1"]
    assert hosts["h1"]["b"] == "h1.b" and hosts["h2"]["a"] == "h2.a"
    assert computed == [("h1", "a"), ("h1", "b"), ("h2", "a"), ("h1", "b"), ("h2", "a")]
