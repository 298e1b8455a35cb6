"""The rings: for one destination list, a name's destinations as carbon / carbon-c-relay pick them.

Each ring is built once from its destinations and exposes ``select(key)`` -> destination indexes
(in the router's order, duplicates removed), a pure function of the already normalized key:

- ``ConsistentRing``: carbon.hashing.ConsistentHashRing under its ConsistentHashingRouter. Ring
  nodes are ``(server, instance)``, ``RING_REPLICAS`` each; a replica's key is the Python tuple
  repr ``"('host', 'a'):7"`` (carbon_ch, mmh3_ch) or ``"7-a"`` (fnv1a_ch: the instance only,
  ``"7-None"`` without one); a position already taken moves up by one, in listed order.
- ``FastRing``: carbon.routers.FastHashRing (FastHashingRouter).
- ``JumpRing``: carbon-c-relay's jump_fnv1a_ch cluster (Lamping & Veach jump hash of the 64-bit
  FNV-1a of the name; members ordered by instance, numerically when both are numbers, then the
  members without instance in listed order; replicas by carbon-c-relay's xorshift re-hash).

Every answer a ring can give is computed up front, so ``select`` is a hash and a lookup.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from hashlib import md5

from bucky.protocol.placement.destinations import Destination
from bucky.protocol.placement.hashes import fnv1a_64, hash_function, jump_bucket, utf8

RING_REPLICAS = 100  # carbon's ConsistentHashRing replica_count, also carbon-c-relay's

Indexes = tuple[int, ...]


def _take(nodes: Iterable[int], destinations: Sequence[Destination], replication_factor: int,
          diverse_replicas: bool) -> Indexes:
    """ConsistentHashingRouter.getDestinations over a node order, then carbon's de-duplication
    (CarbonClientManager puts the destinations in a set): unique indexes in the router's order."""
    out: list[int] = []
    if diverse_replicas:
        used: set[str] = set()
        for i in nodes:
            server = destinations[i].host
            if server in used:
                continue
            used.add(server)
            out.append(i)
            if len(used) >= replication_factor:
                break
    else:
        for count, i in enumerate(nodes):
            if count == replication_factor:
                break
            out.append(i)
    return tuple(dict.fromkeys(out))


class ConsistentRing:
    """carbon.hashing.ConsistentHashRing, with every start position's answer computed up front."""

    select: Callable[[str], Indexes]

    def __init__(self, destinations: Sequence[Destination], hash_type: str,
                 replication_factor: int, diverse_replicas: bool) -> None:
        self.hash = hash_function(hash_type)
        taken: set[int] = set()
        ring: list[tuple[int, int]] = []  # (position, destination index); positions are unique
        for index, dest in enumerate(destinations):
            for i in range(RING_REPLICAS):
                # carbon's "%d-%s" % (i, key[1]) and "%s:%d" % (key, i); str(tuple) is its repr
                if hash_type == "fnv1a_ch":
                    replica_key = f"{i}-{dest.instance}"
                else:
                    replica_key = f"{dest.node}:{i}"
                position = self.hash(replica_key)
                while position in taken:
                    position += 1
                taken.add(position)
                ring.append((position, index))
        ring.sort()
        self.positions = [p for p, _ in ring]
        owners = [i for _, i in ring]
        n, size = len(destinations), len(ring)
        # answers[k]: the destinations when bisect_left lands on ring index k
        self.answers: list[Indexes] = [
            _take(self._walk(owners, k, n), destinations, replication_factor, diverse_replicas)
            for k in range(size)
        ]
        # bisect_left past the last position wraps to the first entry
        wrapped = [*self.answers, self.answers[0]]
        positions, bisect_left = self.positions, bisect.bisect_left
        if hash_type == "carbon_ch":
            # 16-bit positions: one answer per possible hash, no search (512 KiB of references)
            table = [wrapped[bisect_left(positions, p)] for p in range(65536)]

            def select(key: str) -> Indexes:
                try:
                    data = key.encode()
                except UnicodeEncodeError:
                    data = utf8(key)
                d = md5(data).digest()
                return table[d[0] << 8 | d[1]]
        else:
            hash_ = self.hash

            def select(key: str) -> Indexes:
                return wrapped[bisect_left(positions, hash_(key))]

        self.select = select

    @staticmethod
    def _walk(owners: list[int], index: int, n: int) -> Iterable[int]:
        """ConsistentHashRing.get_nodes from ring index `index`, quirks included: a one-node ring
        yields its node first (and then again), and the entry just before the start is never
        visited."""
        if n == 1:
            yield owners[0]
        size = len(owners)
        last = (index - 1) % size
        seen: set[int] = set()
        while len(seen) < n and index != last:
            node = owners[index]
            if node not in seen:
                seen.add(node)
                yield node
            index = (index + 1) % size


class FastRing:
    """carbon.routers.FastHashRing: nodes sorted by the hash of str((server, instance))."""

    select: Callable[[str], Indexes]

    def __init__(self, destinations: Sequence[Destination], hash_type: str,
                 replication_factor: int, diverse_replicas: bool) -> None:
        self.hash = hash_function(hash_type)
        # carbon sorts a set by hash only, so equal hashes land in set order (which varies with
        # PYTHONHASHSEED); here ties keep the listed order, which is at least reproducible.
        order = sorted(range(len(destinations)), key=lambda i: self.hash(str(destinations[i].node)))
        n = len(order)
        self.answers = [
            _take((order[(seed + k) % n] for k in range(n)), destinations, replication_factor,
                  diverse_replicas)
            for seed in range(n)
        ]
        answers, hash_ = self.answers, self.hash

        def select(key: str) -> Indexes:
            return answers[hash_(key) % n]  # n: the number of destinations

        self.select = select


def jump_member_order(destinations: Sequence[Destination]) -> list[int]:
    """carbon-c-relay's entrycmp_jump_fnv1a: members with an instance first, ordered by it
    (as numbers when both are whole numbers, else as strings), then the others as listed."""
    number = re.compile(r"\s*[+-]?[0-9]+")

    def cmp(a: int, b: int) -> int:
        ia, ib = destinations[a].instance, destinations[b].instance
        if ia is None and ib is None:
            return a - b
        if ia is None:
            return 1
        if ib is None:
            return -1
        if number.fullmatch(ia) and number.fullmatch(ib):
            diff = int(ia) - int(ib)
        else:
            ba, bb = ia.encode("utf-8"), ib.encode("utf-8")  # strcmp
            diff = (ba > bb) - (ba < bb)
        return (diff > 0) - (diff < 0)

    return sorted(range(len(destinations)), key=functools.cmp_to_key(cmp))


class JumpRing:
    """carbon-c-relay's jump_fnv1a_ch cluster (ch_get_nodes, JUMP_FNV1a)."""

    def __init__(self, destinations: Sequence[Destination], replication_factor: int) -> None:
        self.members = jump_member_order(destinations)
        self.replication_factor = replication_factor

    def select(self, key: str) -> Indexes:
        h = fnv1a_64(utf8(key))
        members = list(self.members)
        left, out = len(members), []
        while left > 0:
            j = jump_bucket(h, left)
            out.append(members[j])
            if len(out) == self.replication_factor:
                break
            h ^= h >> 12
            h ^= (h << 25) & 0xFFFFFFFFFFFFFFFF
            h ^= h >> 27
            h = (h * 2685821657736338717) & 0xFFFFFFFFFFFFFFFF
            left -= 1
            members[j] = members[left]
        return tuple(out)
