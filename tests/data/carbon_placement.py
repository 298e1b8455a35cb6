"""Run by Debian's /usr/bin/python3 (which has graphite-carbon): carbon's own placement.

Reads JSON on stdin: {"names": [...], "configs": [{"destinations": [[host, port, instance], ...],
"method": "consistent-hashing"|"fast-hashing", "hash_type": str|null, "replication_factor": int,
"diverse_replicas": bool}, ...]}. Writes JSON on stdout: {"normalized": [...], "placements":
[[indexes-as-digit-string per name] per config]}. Each name is first normalized as carbon-relay's
RelayProcessor does with TAG_RELAY_NORMALIZED, then routed by carbon's router class; destinations
are de-duplicated in the router's order (carbon's client manager puts them in a set).
"""

import json
import sys

from carbon.routers import ConsistentHashingRouter, FastHashingRouter
from carbon.util import TaggedSeries

ROUTERS = {"consistent-hashing": ConsistentHashingRouter, "fast-hashing": FastHashingRouter}


class Settings:
    def __init__(self, config):
        self.REPLICATION_FACTOR = config["replication_factor"]
        self.DIVERSE_REPLICAS = config["diverse_replicas"]
        self.ROUTER_HASH_TYPE = config["hash_type"]


def normalize(name):
    try:
        return TaggedSeries.parse(name).path
    except Exception:
        return name


def main():
    job = json.load(sys.stdin)
    names = [normalize(n) for n in job["names"]]
    placements = []
    for config in job["configs"]:
        router = ROUTERS[config["method"]](Settings(config))
        index = {}
        for i, (host, port, instance) in enumerate(config["destinations"]):
            router.addDestination((host, port, instance))
            index[(host, port, instance)] = str(i)
        out = []
        for name in names:
            chosen = []
            for dest in router.getDestinations(name):
                if index[dest] not in chosen:
                    chosen.append(index[dest])
            out.append("".join(chosen))
        placements.append(out)
    json.dump({"normalized": names, "placements": placements}, sys.stdout)


if __name__ == "__main__":
    main()
