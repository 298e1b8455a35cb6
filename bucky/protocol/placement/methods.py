"""The placement methods and hash types carbon / carbon-c-relay offer, and which combine.

``check_plan`` says what is wrong with a placement configuration, as (option, message) pairs
(config.py prefixes the option, ``make_router`` refuses it); it takes plain values, never a
config object.
"""

from __future__ import annotations

from collections.abc import Sequence

from bucky.protocol.placement import hashes
from bucky.protocol.placement.destinations import Destination

METHODS = ("consistent-hashing", "fast-hashing", "jump-hashing", "broadcast")
# method -> hash types it accepts; the first is the default (carbon's, carbon-c-relay's)
HASH_TYPES: dict[str, tuple[str, ...]] = {
    "consistent-hashing": hashes.CONSISTENT_HASH_TYPES,
    "fast-hashing": ("mmh3_ch", "carbon_ch", "fnv1a_ch"),
    "jump-hashing": ("jump_fnv1a_ch",),
    "broadcast": (),
}
ALL_HASH_TYPES = ("carbon_ch", "fnv1a_ch", "mmh3_ch", "jump_fnv1a_ch")


def default_hash_type(method: str) -> str | None:
    types = HASH_TYPES.get(method, ())
    return types[0] if types else None


def check_plan(destinations: Sequence[Destination], method: str, hash_type: str | None,
               replication_factor: int, diverse_replicas: bool) -> list[tuple[str, str]]:
    """Problems with a placement configuration, as (option, message) pairs; [] when it is fine.

    Messages say what was expected and what was given (config.py prefixes the option)."""
    problems = []
    if method not in METHODS:
        problems.append(("graphite_relay_method",
                         f"expected one of {', '.join(METHODS)}, got {method!r}"))
        return problems
    allowed = HASH_TYPES[method]
    effective = hash_type or default_hash_type(method)
    if hash_type is not None and hash_type not in allowed:
        expected = (f"one of {', '.join(allowed)}" if allowed else "None")
        problems.append(("graphite_hash_type",
                         f"expected {expected} with graphite_relay_method {method!r}, "
                         f"got {hash_type!r}"))
    elif effective == "mmh3_ch" and not hashes.mmh3_available():
        option = "graphite_hash_type" if hash_type else "graphite_relay_method"
        given = hash_type if hash_type else method
        problems.append((option, f"{given!r} hashes with mmh3_ch, which needs the mmh3 package "
                                 "(pip install mmh3); expected it installed or another hash type"))
    if replication_factor > len(destinations):
        problems.append(("graphite_replication_factor",
                         f"expected at most the number of destinations ({len(destinations)}), "
                         f"got {replication_factor}"))
    elif method == "broadcast" and replication_factor != 1:
        problems.append(("graphite_replication_factor",
                         f"expected 1 with broadcast (every destination gets every point), "
                         f"got {replication_factor}"))
    if diverse_replicas and method not in ("consistent-hashing", "fast-hashing"):
        problems.append(("graphite_diverse_replicas",
                         f"expected False with {method!r} (it applies to consistent-hashing and "
                         "fast-hashing only), got True"))
    return problems
