"""Benchmark: the cost of placement per point (bucky.protocol.placement), cached and uncached.

Cached: the same 100,000 names placed again and again through bucky.cache.TwoGenerationCache
(what the output's hot path does once it has seen a name), one by one (``cache[path]``) and a
list at a time (``map(cache.__getitem__, paths)``). New names: 50,000 names never placed, per
method and hash type (``router.place``: normalization, hash, ring; this cost is paid once per
name while the name stays in the cache).

    python bench/placement.py [--names 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bucky.cache import TwoGenerationCache  # noqa: E402
from bucky.protocol.placement import make_router, parse_destinations  # noqa: E402

THREE = parse_destinations(["127.0.0.1:2004:a", "127.0.0.1:2104:b", "127.0.0.1:2204:c"])
METHODS = [("consistent-hashing", "carbon_ch"), ("consistent-hashing", "fnv1a_ch"),
           ("fast-hashing", "mmh3_ch"), ("jump-hashing", None)]


def names(count: int, tag: str) -> list[str]:
    return [f"servers.web{i % 500:03d}.{tag}.cpu{i % 8}.metric{i}" for i in range(count)]


def ns_per(fn, items: list[str], rounds: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn(items)
        best = min(best, (time.perf_counter_ns() - start) / len(items))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    seen = names(args.names, "seen")
    router = make_router(THREE)
    cache = TwoGenerationCache(router.place)
    for n in seen:
        cache[n]

    def loop_only(items: list[str]) -> None:
        for _ in items:
            pass

    def by_lookup(items: list[str]) -> None:
        for n in items:
            cache[n]

    def by_batch(items: list[str]) -> None:
        list(map(cache.__getitem__, items))

    base = ns_per(loop_only, seen, args.rounds)
    print(f"cached, {args.names:,} names (loop overhead {base:.0f} ns subtracted):")
    for label, fn in [("cache[path]", by_lookup), ("map(cache.__getitem__, paths)", by_batch)]:
        print(f"  {label:28s} {ns_per(fn, seen, args.rounds) - base:6.0f} ns")
    print("new names (normalization, hash, ring search):")
    for method, hash_type in METHODS:
        fresh = names(50_000, f"new{method[:4]}{hash_type}")
        r = make_router(THREE, method, hash_type)
        start = time.perf_counter_ns()
        for n in fresh:
            r.place(n)
        cost = (time.perf_counter_ns() - start) / len(fresh)
        tagged = [f"{n};dc=ams;host=web{i % 9}" for i, n in enumerate(names(50_000, "tagged"))]
        r = make_router(THREE, method, hash_type)
        start = time.perf_counter_ns()
        for n in tagged:
            r.place(n)
        tag_cost = (time.perf_counter_ns() - start) / len(tagged)
        print(f"  {method} {hash_type or '(jump_fnv1a_ch)':16s} {cost:6.0f} ns plain, "
              f"{tag_cost:6.0f} ns tagged (~{len(fresh[0])} and ~{len(tagged[0])} characters)")


if __name__ == "__main__":
    main()
