"""Which Graphite destination(s) a metric goes to, as carbon and carbon-c-relay decide. Sans-I/O.

A Graphite cluster is several carbon-cache instances, each owning the whisper files of the metrics
a hash assigns to it; graphite-web finds a metric's cached points on the instance the same hash
names. Bucky must choose exactly what carbon-relay / carbon-c-relay would choose, so this module
re-implements their placement bit for bit:

- ``consistent-hashing``: carbon's ConsistentHashingRouter over its ConsistentHashRing
  (``carbon/hashing.py``, ``carbon/routers.py``). Ring nodes are ``(server, instance)``, 100
  replicas each; a replica's key is the Python tuple repr ``"('host', 'a'):7"`` (``carbon_ch``,
  md5, and ``mmh3_ch``) or ``"7-a"`` (``fnv1a_ch``: the instance only, ``"7-None"`` without one);
  a position already taken moves up by one, in the order destinations are listed.
- ``fast-hashing``: carbon's FastHashingRouter (default hash ``mmh3_ch``, the ``mmh3`` package).
- ``jump-hashing``: carbon-c-relay's ``jump_fnv1a_ch`` (Lamping & Veach jump hash of the 64-bit
  FNV-1a of the name; members ordered by instance, numerically when both are numbers, then the
  members without instance in listed order; replicas by carbon-c-relay's xorshift re-hash).
- ``broadcast``: every destination.

The routing key is the name after ``normalize_path`` (carbon-relay's ``TAG_RELAY_NORMALIZED``:
``TaggedSeries.parse(name).path``), and that normalized name is what should be sent. A router
caches its answer per name (two generations of ``cache_size / 2`` names: names in use carry
over, names gone quiet are forgotten), so the output hot path pays one dict lookup per point for a
name it has seen.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from hashlib import md5
from operator import itemgetter
from typing import Any, NamedTuple

METHODS = ("consistent-hashing", "fast-hashing", "jump-hashing", "broadcast")
# method -> hash types it accepts; the first is the default (carbon's, carbon-c-relay's)
HASH_TYPES: dict[str, tuple[str, ...]] = {
    "consistent-hashing": ("carbon_ch", "fnv1a_ch", "mmh3_ch"),
    "fast-hashing": ("mmh3_ch", "carbon_ch", "fnv1a_ch"),
    "jump-hashing": ("jump_fnv1a_ch",),
    "broadcast": (),
}
ALL_HASH_TYPES = ("carbon_ch", "fnv1a_ch", "mmh3_ch", "jump_fnv1a_ch")
RING_REPLICAS = 100  # carbon's ConsistentHashRing replica_count, also carbon-c-relay's
CACHE_SIZE = 200_000  # names a router remembers at most (two generations of half that)
DESTINATION_FORM = "host:port[:instance] (IPv6 as [::1]:2004:a)"

Indexes = tuple[int, ...]


# --- destinations ---------------------------------------------------------------------------------


_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class Destination(NamedTuple):
    """One carbon: where to connect, and the instance name that places it on the ring."""

    host: str
    port: int
    instance: str | None = None

    @property
    def label(self) -> str:
        """The self-metric form: ``host_port_instance`` (``host_port`` without instance).

        Dots, colons and anything else that is not a letter, digit, '-' or '_' become '_', so the
        label is one Graphite path component (``127_0_0_1_2004_a``, ``__1_2004`` for ``[::1]``)."""
        parts = [self.host, str(self.port)] + ([self.instance] if self.instance is not None else [])
        return "_".join(_LABEL_UNSAFE.sub("_", p) for p in parts)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (f":{self.instance}" if self.instance is not None else "")

    @property
    def node(self) -> tuple[str, str | None]:
        """carbon's ring node: ``(server, instance)``; the port is not part of it."""
        return (self.host, self.instance)


def _bad(text: Any, why: str) -> ValueError:
    return ValueError(f"expected {DESTINATION_FORM}: {text!r} {why}")


def parse_destination(text: str, default_port: int | None = None) -> Destination:
    """carbon's DESTINATIONS syntax (``carbon.util.parseDestination``), strictly.

    ``host:port``, ``host:port:instance``, ``[v6addr]:port[:instance]``; everything after the port's
    colon is the instance (as in carbon, it may itself hold colons). Where carbon would accept
    nonsense (no host, an empty instance, a port int() happens to read such as "+2_004"), this
    raises ValueError. With `default_port`, a bare ``host`` / ``[v6addr]`` is accepted too."""
    if not isinstance(text, str):
        raise _bad(text, "is not a string")
    s = text.strip()
    if not s:
        raise _bad(text, "is empty")
    if s.startswith("["):
        end = s.rfind("]:")
        if end < 0:
            if s.endswith("]") and default_port is not None:
                host, rest = s[1:-1], str(default_port)
            else:
                raise _bad(text, "has no ']:port' after the IPv6 address")
        else:
            host, rest = s[1:end], s[end + 2:]
    elif ":" in s:
        colon = s.find(":")
        host, rest = s[:colon], s[colon + 1:]
    elif default_port is not None:
        host, rest = s, str(default_port)
    else:
        raise _bad(text, "has no port")
    port_text, sep, instance_text = rest.partition(":")
    instance = instance_text if sep else None
    if not host and not s.startswith("[") and s.count(":") >= 2:
        raise _bad(text, "needs brackets around the IPv6 address")
    if not host or any(c.isspace() for c in host) or "[" in host or "]" in host:
        raise _bad(text, "has no valid host")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        if ":" in host or (not s.startswith("[") and rest.count(":") >= 2):
            raise _bad(text, "needs brackets around the IPv6 address")
        raise _bad(text, "has no port number 1-65535")
    if instance is not None and (not instance or any(c.isspace() for c in instance)):
        raise _bad(text, "has an empty instance or whitespace in it")
    return Destination(host, int(port_text), instance)


def parse_destinations(items: Iterable[str] | str, default_port: int | None = None,
                       ) -> tuple[Destination, ...]:
    """Several destinations (a list, or one comma-separated string as in carbon.conf).

    Two destinations with the same ``(host, instance)`` are one ring node to carbon, which refuses
    them ("destination instance ... already configured"); so does this (ValueError)."""
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    out: list[Destination] = []
    seen: dict[tuple[str, str | None], Destination] = {}
    for item in items:
        dest = parse_destination(item, default_port)
        if dest.node in seen:
            raise ValueError(
                f"expected each (host, instance) once: {str(seen[dest.node])!r} and {str(dest)!r} "
                f"are both node {dest.node!r} of carbon's ring; give them different instances")
        seen[dest.node] = dest
        out.append(dest)
    return tuple(out)


# --- tagged names (carbon.util.TaggedSeries) ------------------------------------------------------


_OPENMETRICS_TAG = re.compile(r'([^=]+)="((?:[\\]["\\]|[^"\\])+)"(:?,|$)')  # carbon's, verbatim


def _valid_tag(tag: str, value: str) -> bool:
    return (bool(tag) and bool(value) and not any(c in tag for c in ";!^=")
            and ";" not in value and value[0] != "~")


def _format_tags(metric: str, tags: dict[str, str]) -> str | None:
    name = metric.lstrip("~")
    if not name:
        return None
    tags["name"] = name
    return name + "".join(sorted(f";{k}={v}" for k, v in tags.items() if k != "name"))


def _parse_carbon(path: str) -> str | None:
    segments = path.split(";")
    if not segments[0]:
        return None
    tags: dict[str, str] = {}
    for segment in segments[1:]:
        tag = segment.split("=", 1)
        if len(tag) != 2 or not tag[0] or not _valid_tag(tag[0], tag[1]):
            return None
        tags[tag[0]] = tag[1]
    return _format_tags(segments[0], tags)


def _parse_openmetrics(path: str) -> str | None:
    parts = path[:-1].split("{", 2)
    if len(parts) != 2 or not parts[0]:
        return None
    metric, rawtags = parts
    tags: dict[str, str] = {}
    while rawtags:
        m = _OPENMETRICS_TAG.match(rawtags)
        if not m:
            return None
        tag, value = m.group(1), m.group(2).replace(r"\"", '"').replace("\\\\", "\\")
        if not _valid_tag(tag, value):
            return None
        tags[tag] = value
        rawtags = rawtags[len(m.group(0)):]
    return _format_tags(metric, tags)


def normalize_path(path: str) -> str:
    """carbon-relay's TAG_RELAY_NORMALIZED: ``TaggedSeries.parse(path).path``, or `path` itself
    when carbon cannot parse it (carbon logs and relays the name unchanged).

    ``name;b=2;a=1`` -> ``name;a=1;b=2`` (the ``;k=v`` strings sorted); ``m{a="1"}`` ->
    ``m;a=1``; leading ``~`` are stripped from the name; a name without tags is unchanged."""
    if ";" not in path and path[:1] != "~" and path[-2:] != '"}':
        return path
    if path[-2:] == '"}' and "{" in path:
        normal = _parse_openmetrics(path)
    else:
        normal = _parse_carbon(path)
    return path if normal is None else normal


# --- hashes ---------------------------------------------------------------------------------------


def _utf8(key: str) -> bytes:
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: carbon would crash; hash them anyway
        return key.encode("utf-8", "surrogatepass")


def fnv1a_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def fnv1a_64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def carbon_ch(key: str) -> int:
    """carbon's compactHash position: the first 16 bits of md5(key)."""
    d = md5(_utf8(key)).digest()
    return d[0] << 8 | d[1]


def fnv1a_ch(key: str) -> int:
    h = fnv1a_32(_utf8(key))
    return (h >> 16) ^ (h & 0xFFFF)


def _mmh3() -> Any:
    import mmh3  # optional: only fast-hashing's default hash (or mmh3_ch) needs it

    return mmh3


def mmh3_available() -> bool:
    try:
        _mmh3()
    except ImportError:
        return False
    return True


def hash_function(hash_type: str) -> Callable[[str], int]:
    """carbon.hashing.carbonHash(key, hash_type) as a function of the key."""
    if hash_type == "carbon_ch":
        return carbon_ch
    if hash_type == "fnv1a_ch":
        return fnv1a_ch
    if hash_type == "mmh3_ch":
        mmh3_hash = _mmh3().hash
        return lambda key: mmh3_hash(_utf8(key))  # signed 32-bit, seed 0, as carbon's
    raise ValueError(f"expected one of {', '.join(HASH_TYPES['consistent-hashing'])}, "
                     f"got {hash_type!r}")


def jump_bucket(key: int, buckets: int) -> int:
    """carbon-c-relay's jump_bucketpos (Lamping & Veach), its double arithmetic included."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (2147483648.0 / ((key >> 33) + 1)))
    return b


# --- the plan: which combinations make sense ------------------------------------------------------


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
    elif effective == "mmh3_ch" and not mmh3_available():
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


# --- the rings ------------------------------------------------------------------------------------


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


class _Ring:
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
                    data = _utf8(key)
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


class _FastRing:
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



def _jump_member_order(destinations: Sequence[Destination]) -> list[int]:
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


class _Jump:
    """carbon-c-relay's jump_fnv1a_ch cluster (ch_get_nodes, JUMP_FNV1a)."""

    def __init__(self, destinations: Sequence[Destination], replication_factor: int) -> None:
        self.members = _jump_member_order(destinations)
        self.replication_factor = replication_factor

    def select(self, key: str) -> Indexes:
        h = fnv1a_64(_utf8(key))
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


# --- the router -----------------------------------------------------------------------------------


_SECOND = itemgetter(1)


class _PlacementCache(dict):
    """path -> (normalized path, indexes), computed by `__missing__` once per name.

    Two generations of at most `limit` names each: when the current one is full it becomes the
    previous one (a copy) and starts empty; a miss looks in the previous generation before
    computing, so names in use carry over and the whole stays under 2 * `limit` entries."""

    __slots__ = ("_compute", "_limit", "_previous")

    def __init__(self, compute: Callable[[str], tuple[str, Indexes]], limit: int) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit
        self._previous: dict[str, tuple[str, Indexes]] = {}

    def __missing__(self, path: str) -> tuple[str, Indexes]:
        answer = self._previous.get(path)
        if answer is None:
            answer = self._compute(path)
        if len(self) >= self._limit:
            self._previous = self.copy()
            self.clear()
        self[path] = answer
        return answer

    def entries(self) -> int:
        """Names held, both generations."""
        return len(self) + len(self._previous)


class Router:
    """Placement for one destination list: ``route(path)`` -> destination indexes (carbon's
    order), ``place(path)`` -> ``(normalized path to send, indexes)``; ``route_batch`` and
    ``place_batch`` do a list of paths at once. All are cached per name (``place`` is then one
    C-level dict lookup). ``constant`` is the indexes when they never depend on the name (one
    destination, broadcast), else None."""

    route: Callable[[str], Indexes]
    place: Callable[[str], tuple[str, Indexes]]

    def __init__(self, destinations: Sequence[Destination], method: str = "consistent-hashing",
                 hash_type: str | None = None, replication_factor: int = 1,
                 diverse_replicas: bool = False, *, cache_size: int = CACHE_SIZE) -> None:
        destinations = tuple(destinations)
        if not destinations:
            raise ValueError("expected at least one destination, got none")
        nodes = [d.node for d in destinations]
        if len(set(nodes)) != len(nodes):
            parse_destinations([str(d) for d in destinations])  # raises, naming the pair
        problems = check_plan(destinations, method, hash_type, replication_factor,
                              diverse_replicas)
        if problems:
            raise ValueError("; ".join(f"{option}: {message}" for option, message in problems))
        self.destinations = destinations
        self.method = method
        self.hash_type = hash_type or default_hash_type(method)
        self.replication_factor = replication_factor
        self.diverse_replicas = diverse_replicas
        self.cache_size = cache_size
        everyone = tuple(range(len(destinations)))
        select: Callable[[str], Indexes]
        if method == "broadcast" or len(destinations) == 1:
            # one destination: every method (and every replication factor it allows) names it
            self.constant: Indexes | None = everyone
            select = lambda key: everyone  # noqa: E731
        else:
            self.constant = None
            if method == "consistent-hashing":
                select = _Ring(destinations, self.hash_type, replication_factor,
                               diverse_replicas).select
            elif method == "fast-hashing":
                select = _FastRing(destinations, self.hash_type, replication_factor,
                                   diverse_replicas).select
            else:
                select = _Jump(destinations, replication_factor).select
        self.select = select
        def compute(path: str) -> tuple[str, Indexes]:
            key = normalize_path(path)
            return (key, select(key))

        cache = _PlacementCache(compute, max(1, cache_size // 2))
        self._cache = cache
        get = cache.__getitem__
        self.place = get  # a C-level dict lookup for a name seen before

        def route(path: str) -> Indexes:
            return get(path)[1]

        self.route = route

    def cached(self) -> int:
        """How many names the cache holds now (at most `cache_size`)."""
        return self._cache.entries()

    def place_batch(self, paths: Iterable[str]) -> list[tuple[str, Indexes]]:
        """``[place(p) for p in paths]`` with no Python call per cached name."""
        return list(map(self._cache.__getitem__, paths))

    def route_batch(self, paths: Iterable[str]) -> list[Indexes]:
        """``[route(p) for p in paths]`` with no Python call per cached name."""
        return list(map(_SECOND, map(self._cache.__getitem__, paths)))

    def describe(self) -> str:
        """One line for --explain and the start-up log."""
        n = len(self.destinations)
        what = f"{n} destination{'s' if n != 1 else ''}"
        if self.method == "broadcast":
            return f"broadcast to {what}"
        extra = f"{self.hash_type}, replication {self.replication_factor}"
        if self.diverse_replicas:
            extra += ", diverse replicas"
        return f"{self.method} ({extra}) over {what}"

    def __repr__(self) -> str:
        return f"<Router {self.describe()}: {', '.join(map(str, self.destinations))}>"


def make_router(destinations: Sequence[Destination], method: str = "consistent-hashing",
                hash_type: str | None = None, replication_factor: int = 1,
                diverse_replicas: bool = False, *, cache_size: int = CACHE_SIZE) -> Router:
    """A Router; ValueError when the combination is not one carbon / carbon-c-relay offers."""
    return Router(destinations, method, hash_type, replication_factor, diverse_replicas,
                  cache_size=cache_size)


class Plan(NamedTuple):
    destinations: tuple[Destination, ...]
    router: Router


def destinations_from_config(cfg: Any) -> Plan:
    """The effective destinations and router of a validated Config: ``graphite_destinations``, or
    when that is empty the one destination ``graphite_ip:graphite_port`` (as before clusters)."""
    destinations = tuple(cfg.graphite_destinations) or (
        Destination(str(cfg.graphite_ip).strip("[]"), int(cfg.graphite_port), None),)
    router = make_router(destinations, cfg.graphite_relay_method, cfg.graphite_hash_type,
                         cfg.graphite_replication_factor, cfg.graphite_diverse_replicas)
    return Plan(destinations, router)
