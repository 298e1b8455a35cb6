"""Issue 10, 5(b): a real carbon-c-relay places every name on the sink Bucky's router chooses.

One carbon-c-relay (Debian, `carbon-c-relay -f conf -p PORT -s`, in the foreground) relays the same
plain ASCII names to six clusters of three sink listeners each: carbon_ch, fnv1a_ch and
jump_fnv1a_ch, each with replication 1 and 2. Every sink records what reaches it; for every
cluster and name, the set of sinks must be the set of destinations Bucky's router names.

Limits of the comparison (see README "Graphite clusters"): carbon-c-relay rewrites characters
outside [A-Za-z0-9-_:#.] and hashes tagged names its own way, so the names here are plain ASCII;
where two ring positions collide carbon moves the later one up while carbon-c-relay keeps both, so
the instance names below were picked (and are checked) to give collision-free rings; fnv1a_ch
without instances hashes "host:port" in carbon-c-relay but "None" in carbon, hence instances.
"""

from __future__ import annotations

import socket
import subprocess
import time

from fakecarbon import FakeCarbon, free_port
from peers import executable
from placement_names import ascii_names

from bucky.protocol import placement
from bucky.protocol.placement import Destination, make_router

CLUSTERS = [  # (name, carbon-c-relay type, Bucky method, hash type, replication, instances)
    ("ch1", "carbon_ch", "consistent-hashing", "carbon_ch", 1, ["a", "b", "c"]),
    ("ch2", "carbon_ch", "consistent-hashing", "carbon_ch", 2, ["a", "b", "c"]),
    ("fnv1", "fnv1a_ch", "consistent-hashing", "fnv1a_ch", 1, ["cache-a", "cache-b", "cache-c"]),
    ("fnv2", "fnv1a_ch", "consistent-hashing", "fnv1a_ch", 2, ["cache-a", "cache-b", "cache-c"]),
    # listed out of order: both sort members by instance, numerically (1, 2, 10)
    ("jump1", "jump_fnv1a_ch", "jump-hashing", None, 1, ["2", "10", "1"]),
    ("jump2", "jump_fnv1a_ch", "jump-hashing", None, 2, ["2", "10", "1"]),
]


def _ring_collisions(dests: list[Destination], hash_type: str) -> int:
    positions = []
    for d in dests:
        for i in range(placement.RING_REPLICAS):
            key = f"{i}-{d.instance}" if hash_type == "fnv1a_ch" else f"{d.node}:{i}"
            positions.append(placement.hash_function(hash_type)(key))
    return len(positions) - len(set(positions))


def _relay_listening(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert proc.poll() is None, "carbon-c-relay exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("carbon-c-relay did not listen within the deadline")


def test_carbon_c_relay_places_names_like_bucky(tmp_path):
    relay = executable("carbon-c-relay", "carbon-c-relay", "/usr/bin/carbon-c-relay")
    names = ascii_names(3000)
    sinks: dict[str, list[FakeCarbon]] = {}
    routers = {}
    conf = []
    try:
        for name, kind, method, hash_type, replication, instances in CLUSTERS:
            sinks[name] = [FakeCarbon().start() for _ in instances]
            dests = [Destination("127.0.0.1", s.port, inst)
                     for s, inst in zip(sinks[name], instances, strict=True)]
            if hash_type:
                assert _ring_collisions(dests, hash_type) == 0, "pick other instance names"
            routers[name] = make_router(dests, method, hash_type, replication)
            members = " ".join(f"127.0.0.1:{d.port}={d.instance}" for d in dests)
            conf.append(f"cluster {name} {kind} replication {replication} {members};")
        conf.append(f"match * send to {' '.join(sinks)} stop;")
        conf_file = tmp_path / "relay.conf"
        conf_file.write_text("\n".join(conf) + "\n")
        port = free_port()
        log = open(tmp_path / "relay.log", "wb")  # noqa: SIM115 (closed in finally)
        # -s: submission mode, no statistics of its own in the stream; -w 1: one worker
        proc = subprocess.Popen([relay, "-f", str(conf_file), "-p", str(port), "-s", "-w", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _relay_listening(port, proc, time.monotonic() + 15)
            payload = "".join(f"{n} 1 1700000000\n" for n in names).encode()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(payload)
            for name, *_, replication, _ in CLUSTERS:
                expected = len(names) * replication
                deadline = time.monotonic() + 30
                while sum(len(s.points) for s in sinks[name]) < expected:
                    relay_log = (tmp_path / "relay.log").read_text()[-2000:]
                    arrived = sum(len(s.points) for s in sinks[name])
                    assert time.monotonic() < deadline, (
                        f"{name}: {arrived} of {expected} points arrived; relay log: {relay_log}")
                    time.sleep(0.05)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
        for name, *_ in CLUSTERS:
            landed: dict[str, set[int]] = {}
            for i, sink in enumerate(sinks[name]):
                for path in sink.paths():
                    landed.setdefault(path, set()).add(i)
            assert set(landed) == set(names), name
            differ = [(n, landed[n], routers[name].route(n)) for n in names
                      if landed[n] != set(routers[name].route(n))]
            assert differ == [], (name, len(differ), differ[:5])
            # every sink got a share: the comparison is not trivially one-sink-takes-all
            assert all(len(s.points) > len(names) // 10 for s in sinks[name]), name
    finally:
        for group in sinks.values():
            for sink in group:
                sink.stop()
