"""The router: for one destination list and placement method, where a metric name goes. Pure.

``place(path)`` is ``(the name to send, destination indexes)``: the routing key is the name after
``normalize_path`` (carbon-relay's TAG_RELAY_NORMALIZED), and that normalized name is what should
be sent. ``select(key)`` places a key already normalized. Nothing is cached here: a caller that
places the same names again and again keeps the answers in ``bucky.cache.TwoGenerationCache``
(the Graphite output caches destination masks per path; ``--explain`` caches ``place``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bucky.protocol.placement.destinations import Destination, parse_destinations
from bucky.protocol.placement.methods import check_plan, default_hash_type
from bucky.protocol.placement.rings import ConsistentRing, FastRing, Indexes, JumpRing
from bucky.protocol.placement.tags import normalize_path


class Router:
    """Placement for one destination list: ``select(key)`` -> destination indexes (carbon's
    order) for a normalized key, ``route(path)`` the same for any name, ``place(path)`` ->
    ``(normalized path to send, indexes)``. ``constant`` is the indexes when they never depend
    on the name (one destination, broadcast), else None."""

    select: Callable[[str], Indexes]

    def __init__(self, destinations: Sequence[Destination], method: str = "consistent-hashing",
                 hash_type: str | None = None, replication_factor: int = 1,
                 diverse_replicas: bool = False) -> None:
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
        everyone = tuple(range(len(destinations)))
        if method == "broadcast" or len(destinations) == 1:
            # one destination: every method (and every replication factor it allows) names it
            self.constant: Indexes | None = everyone
            self.select = lambda key: everyone
        else:
            self.constant = None
            if method == "consistent-hashing":
                self.select = ConsistentRing(destinations, self.hash_type, replication_factor,
                                             diverse_replicas).select
            elif method == "fast-hashing":
                self.select = FastRing(destinations, self.hash_type, replication_factor,
                                       diverse_replicas).select
            else:
                self.select = JumpRing(destinations, replication_factor).select

    def place(self, path: str) -> tuple[str, Indexes]:
        """(the name carbon-relay would send, the destinations it goes to)."""
        key = normalize_path(path)
        return (key, self.select(key))

    def route(self, path: str) -> Indexes:
        """The destinations `path` goes to."""
        return self.select(normalize_path(path))

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
                diverse_replicas: bool = False) -> Router:
    """A Router; ValueError when the combination is not one carbon / carbon-c-relay offers."""
    return Router(destinations, method, hash_type, replication_factor, diverse_replicas)
