"""The proxy.js ring and the management text, against the npm packages themselves (run by node)."""

from __future__ import annotations

import json
import shutil
import subprocess

from peers import npm_package

from bucky.protocol import statsd_admin as admin
from bucky.protocol.statsd_ring import HashRing, proxy_key
from bucky.protocol.statsd_route import ForwardRouter, pack_lines

NODES = ["10.0.0.1:8125", "10.0.0.2:8125", "statsd-c.example:9125", "127.0.0.1:8129"]
KEYS = [f"svc.{i}.req" for i in range(3000)] + ["", "é.ü", "a;b=c", "x" * 300, "0", "-"]

SCRIPT = r"""
const HashRing = require(process.argv[1] + '/node_modules/hashring');
const nodes = JSON.parse(process.argv[2]), keys = JSON.parse(process.argv[3]);
const weights = {}; nodes.forEach(n => weights[n] = 100);
const ring = new HashRing(weights, 'md5', {'max cache size': 10000, 'replicas': 0});
const out = {all: keys.map(k => ring.get(k))};
ring.remove(nodes[1]); out.removed = keys.map(k => ring.get(k));
const back = {}; back[nodes[1]] = 100; ring.add(back); out.rejoined = keys.map(k => ring.get(k));
for (let i = 0; i < nodes.length; i++) ring.remove(nodes[i]);
out.empty = ring.get('x') === undefined ? null : 'x';
console.log(JSON.stringify(out));
"""


def run_node(script: str, *args: str) -> str:
    node = shutil.which("node") or "node"
    done = subprocess.run([node, "-e", script, *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def test_ring_equals_npm_hashring_as_proxy_js_builds_it() -> None:
    base = npm_package("statsd").parent.parent
    theirs = json.loads(run_node(SCRIPT, str(base), json.dumps(NODES), json.dumps(KEYS)))
    ring = HashRing(NODES)
    assert [ring.get(k) for k in KEYS] == theirs["all"]
    ring.remove(NODES[1])
    assert [ring.get(k) for k in KEYS] == theirs["removed"]
    ring.add(NODES[1])  # goes last, as ring.add appends
    assert [ring.get(k) for k in KEYS] == theirs["rejoined"]
    for n in NODES:
        ring.remove(n)
    assert ring.get("x") is None and theirs["empty"] is None


def test_proxy_key_and_forward_router() -> None:
    assert proxy_key(b"a.b:1|c:2|ms") == "a.b"
    assert proxy_key(b"nocolon") == "nocolon"
    ring = HashRing(NODES[:3])
    groups, unrouted = ForwardRouter(ring.get).split(b"a:1|c\n\nb:2|c\na:3|c\n")
    assert unrouted == 0
    assert sorted(line for lines in groups.values() for line in lines) == [
        b"a:1|c", b"a:3|c", b"b:2|c"]
    assert groups[ring.get("a")][:2] == [b"a:1|c", b"a:3|c"] or ring.get("a") == ring.get("b")
    assert ForwardRouter(HashRing().get).split(b"a:1|c\nb:1|c") == ({}, 2)


def test_pack_lines_respects_the_packet_size() -> None:
    lines = [f"metric.{i}:{i}|c".encode() for i in range(500)] + [b"x" * 2000]
    packets = pack_lines(lines, 1432)
    assert b"\n".join(packets).split(b"\n") == lines
    assert all(len(p) <= 1432 for p in packets[:-1]) and packets[-1] == b"x" * 2000
    assert pack_lines([], 1432) == []


INSPECT = r"""
const util = require('util');
for (const v of JSON.parse(process.argv[1])) console.log(JSON.stringify(util.inspect(v)));
"""


def test_inspect_prints_what_node_prints() -> None:
    values = [
        {}, {"a": 1}, {"statsd.bad_lines_seen": 0, "foo": 2.5, "_x1": -0.001},
        {f"key.number.{i}": i * 1.5 for i in range(12)},
        {"api.t": [5, 7.5], "b": []}, {"t": [1, 2, 3, 4, 5, 6]},
        {"it's": 1e21, "big": 123456789012345680000, "small": 1e-7, "frac": 0.1 + 0.2},
        {"api.latency": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]},
        {"t7": [1, 2, 3, 4, 5, 6, 7]}, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        {"api.t": [i * 1.25 for i in range(40)], "x": [100, 2, 33333.5, 4, 5, 6, 7, 8]},
        {"long": [i / 7 for i in range(150)]}, list(range(101)),
        {"k": [123456.789, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]},
    ]
    theirs = [json.loads(line) for line in run_node(INSPECT, json.dumps(values)).splitlines()]
    assert [admin.inspect(v) for v in values] == theirs


def test_inspect_breaks_lines_where_node_does() -> None:
    """Objects and arrays whose one-line form is just under, at and just over Node's 80 columns
    (and number arrays grouped in columns of every width): a change of the line width, or of the
    arithmetic around it, prints some of them differently."""
    values: list[object] = []
    for n in range(40, 80):
        values.append({"k" + "x" * n: 1, "b": 22})  # one entry across the break
        values.append({"stats.a": [1.5] * 3, "y" * (n - 30): 7})
    for digits in range(1, 16):
        for count in (7, 12, 26, 27, 40):
            values.append([int("9" * digits) - i for i in range(count)])
            values.append({"t": [int("7" * digits) + 0.5 for _ in range(count)]})
    theirs = [json.loads(line) for line in run_node(INSPECT, json.dumps(values)).splitlines()]
    ours = [admin.inspect(v) for v in values]
    assert [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b] == []
    assert any("\n" in t for t in theirs) and any("\n" not in t for t in theirs[:80])


def test_management_text() -> None:
    assert admin.parse_command("  delcounters a b \r\n") == ("delcounters", ["a", "b"])
    assert admin.health_command("up", ["DOWN"]) == "down"
    assert admin.health_command("down", ["sideways"]) == "down"
    assert admin.existing_stats(["a.b", "a.c", "ab"], "a.*") == ["a.b", "a.c"]
    assert admin.delete_answer({"x": ["x"]}, ["x", "y"]) == (
        "deleted: x\nmetric y not found\nEND\n\n")
    assert admin.stats_answer(5, {"messages": {"last_msg_seen": 90, "bad_lines_seen": 2}},
                              100) == (
        "uptime: 5\nmessages.last_msg_seen: 10\nmessages.bad_lines_seen: 2\nEND\n\n")
