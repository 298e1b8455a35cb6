"""Which Graphite destination(s) a metric goes to, as carbon and carbon-c-relay decide. Sans-I/O.

A Graphite cluster is several carbon-cache instances, each owning the whisper files of the metrics
a hash assigns to it; graphite-web finds a metric's cached points on the instance the same hash
names. Bucky must choose exactly what carbon-relay / carbon-c-relay would choose, so this package
re-implements their placement bit for bit:

- ``consistent-hashing``: carbon's ConsistentHashingRouter over its ConsistentHashRing.
- ``fast-hashing``: carbon's FastHashingRouter (default hash ``mmh3_ch``, the ``mmh3`` package).
- ``jump-hashing``: carbon-c-relay's ``jump_fnv1a_ch``.
- ``broadcast``: every destination.

Modules, each a pure function of plain values (no config object, no cache, no I/O):
destinations (``host:port[:instance]`` parsing, the effective destination list), tags (carbon's
tagged-name normalization, the routing key), hashes (carbon_ch, fnv1a_ch, mmh3_ch, jump),
methods (the methods, their hash types, ``check_plan``), rings (the three rings' answers computed
up front) and router (``Router``: a destination list and a method -> ``place(path)``). The names
below are the package's public interface; import them from here.
"""

from __future__ import annotations

from bucky.protocol.placement.destinations import (
    DESTINATION_FORM,
    Destination,
    effective_destinations,
    parse_destination,
    parse_destinations,
)
from bucky.protocol.placement.hashes import (
    carbon_ch,
    fnv1a_32,
    fnv1a_64,
    fnv1a_ch,
    hash_function,
    jump_bucket,
    mmh3_available,
)
from bucky.protocol.placement.methods import (
    ALL_HASH_TYPES,
    HASH_TYPES,
    METHODS,
    check_plan,
    default_hash_type,
)
from bucky.protocol.placement.rings import RING_REPLICAS, Indexes, jump_member_order
from bucky.protocol.placement.router import Router, make_router
from bucky.protocol.placement.tags import normalize_path

__all__ = [
    "ALL_HASH_TYPES", "DESTINATION_FORM", "HASH_TYPES", "METHODS", "RING_REPLICAS",
    "Destination", "Indexes", "Router", "carbon_ch", "check_plan", "default_hash_type",
    "effective_destinations", "fnv1a_32", "fnv1a_64", "fnv1a_ch", "hash_function",
    "jump_bucket", "jump_member_order", "make_router", "mmh3_available", "normalize_path",
    "parse_destination", "parse_destinations",
]
