"""Placement: destinations, carbon's tag normalization, the hashes, the routers, the config options.

The main check (issue 10, 5a) runs carbon's own router classes (Debian graphite-carbon) with
Debian's /usr/bin/python3 in a subprocess (tests/data/carbon_placement.py reads the names and
configurations as JSON and prints carbon's choices), for 10,000 varied names and every
combination below, and requires Bucky's placement to be identical, name by name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest
from peers import missing
from placement_names import varied_names

from bucky import config
from bucky.cache import TwoGenerationCache
from bucky.daemon.outputs.graphite import graphite_router
from bucky.errors import ConfigError
from bucky.protocol import placement
from bucky.protocol.placement import (
    Destination,
    check_plan,
    effective_destinations,
    fnv1a_32,
    fnv1a_64,
    jump_bucket,
    make_router,
    normalize_path,
    parse_destination,
    parse_destinations,
)

DATA = Path(__file__).resolve().parent.parent / "data"
DEBIAN_PYTHON = "/usr/bin/python3"
CARBON_DIR = "/usr/lib/python3/dist-packages/carbon"

# --- destinations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:2004", ("127.0.0.1", 2004, None)),
    ("127.0.0.1:2004:a", ("127.0.0.1", 2004, "a")),
    ("  carbon-1.example.com:2104:cache-b  ", ("carbon-1.example.com", 2104, "cache-b")),
    ("[::1]:2004:a", ("::1", 2004, "a")),
    ("[fe80::1%eth0]:2004", ("fe80::1%eth0", 2004, None)),
    ("host:2004:a:b", ("host", 2004, "a:b")),  # carbon: the instance is everything after the port
    ("höst:1:ü", ("höst", 1, "ü")),
])
def test_parse_destination_follows_carbon(text, expected):
    # carbon.util.parseDestination gives the same (server, port, instance) for each of these
    assert parse_destination(text) == expected


@pytest.mark.parametrize("text,why", [
    ("127.0.0.1", "has no port"),
    ("::1:2004", "needs brackets"),
    ("fe80::1:2004", "needs brackets"),
    ("[::1]2004", "has no ']:port'"),
    ("host:0", "1-65535"),
    ("host:65536", "1-65535"),
    ("host:+2004", "1-65535"),
    ("host:2_004", "1-65535"),
    ("host:", "1-65535"),
    ("host:2004:", "empty instance"),
    ("host:2004:a b", "whitespace"),
    (":2004", "no valid host"),
    ("a host:2004", "no valid host"),
    ("", "is empty"),
    (42, "not a string"),
])
def test_parse_destination_refuses_what_carbon_would_misread(text, why):
    with pytest.raises(ValueError) as err:
        parse_destination(text)
    assert str(err.value).startswith("expected host:port[:instance] (IPv6 as [::1]:2004:a): ")
    assert why in str(err.value)


def test_default_port_allows_a_bare_host():
    assert parse_destination("carbon", default_port=2004) == ("carbon", 2004, None)
    assert parse_destination("[::1]", default_port=2004) == ("::1", 2004, None)


def test_parse_destinations_list_or_comma_string_and_duplicates():
    expected = (Destination("a", 1, "x"), Destination("b", 2, None))
    assert parse_destinations(["a:1:x", "b:2"]) == expected
    assert parse_destinations("a:1:x, b:2,") == expected
    # same (server, instance): one ring node to carbon, which refuses it; the port does not matter
    with pytest.raises(ValueError, match=r"'a:1' and 'a:2' are both node \('a', None\)"):
        parse_destinations(["a:1", "a:2"])
    with pytest.raises(ValueError, match="both node"):
        parse_destinations(["a:1:x", "b:1", "a:9:x"])
    assert len(parse_destinations(["a:1:x", "a:1:y", "a:1"])) == 3  # instances tell them apart


def test_label_and_str():
    assert Destination("127.0.0.1", 2004, "a").label == "127_0_0_1_2004_a"
    assert Destination("127.0.0.1", 2004).label == "127_0_0_1_2004"
    assert Destination("::1", 2004, "a").label == "__1_2004_a"
    assert Destination("carbon.example", 2004, "x.y").label == "carbon_example_2004_x_y"
    for text in ["127.0.0.1:2004", "[::1]:2004:a", "h:1:a:b"]:
        assert str(parse_destination(text)) == text
    assert Destination("h", 1, "a").node == ("h", "a")


# --- tag normalization (carbon.util.TaggedSeries.parse(name).path) --------------------------------


@pytest.mark.parametrize("name,expected", [
    ("a.b.c", "a.b.c"),
    ("name;b=2;a=1", "name;a=1;b=2"),
    ("cpu;host=a;dc=x", "cpu;dc=x;host=a"),  # README
    ("x;a=2;a.b=1", "x;a.b=1;a=2"),  # carbon sorts the ';k=v' strings: '.' < '='
    ("x;a=1;a=2", "x;a=2"),  # a repeated tag: the last wins
    ("x;name=other;b=1", "x;b=1"),  # the name tag is the metric's own
    ("~x;b=1", "x;b=1"),
    ("~~x", "x"),
    ('m{b="2",a="1"}', "m;a=1;b=2"),
    ('m{q="x\\"y"}', 'm;q=x"y'),
    # carbon cannot parse these: the relay logs and sends them unchanged
    ("a;b", "a;b"),
    ("a;b=", "a;b="),
    ("a;=1", "a;=1"),
    ("a;b=~1", "a;b=~1"),
    ("a;b!=1", "a;b!=1"),
    (";b=1", ";b=1"),
    ("~", "~"),
    ("", ""),
    ("m{}", "m{}"),
    ('{a="1"}', '{a="1"}'),
])
def test_normalize_path(name, expected):
    assert normalize_path(name) == expected
    assert normalize_path(normalize_path(name)) == normalize_path(name)


# --- hashes ---------------------------------------------------------------------------------------


def test_hash_vectors():
    assert fnv1a_32(b"") == 0x811C9DC5 and fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968
    assert fnv1a_64(b"") == 0xCBF29CE484222325 and fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8
    key = "('127.0.0.1', None):0"
    assert placement.carbon_ch(key) == int(hashlib.md5(key.encode()).hexdigest()[:4], 16)
    h = fnv1a_32(key.encode())
    assert placement.fnv1a_ch(key) == (h >> 16) ^ (h & 0xFFFF)


def test_jump_hash_is_consistent():
    # growing from n to n+1 buckets moves a key only into the new bucket (Lamping & Veach)
    for key in range(0, 2**64, 2**64 // 997):
        previous = jump_bucket(key, 1)
        assert previous == 0
        for n in range(2, 40):
            now = jump_bucket(key, n)
            assert now == previous or now == n - 1
            previous = now


def test_names_that_utf8_cannot_encode_still_route():
    router = make_router(parse_destinations(["a:1:a", "b:1:b", "c:1:c"]))
    for name in ["bad\udcff.name", "\ud800"]:
        assert len(router.route(name)) == 1
    jump = make_router(parse_destinations(["a:1", "b:1"]), "jump-hashing")
    assert len(jump.route("bad\udcff")) == 1


# --- routers --------------------------------------------------------------------------------------

THREE = parse_destinations(["127.0.0.1:2004:a", "127.0.0.1:2104:b", "127.0.0.1:2204:c"])


def test_broadcast_and_single_destination_are_constant():
    router = make_router(THREE, "broadcast")
    assert router.constant == (0, 1, 2) and router.route("x") == (0, 1, 2)
    for method in placement.METHODS:
        one = make_router(THREE[:1], method)
        assert one.constant == (0,) and one.route("anything") == (0,)
    assert make_router(THREE).constant is None


@pytest.mark.parametrize("method,hash_type", [
    ("consistent-hashing", "carbon_ch"), ("consistent-hashing", "fnv1a_ch"),
    ("consistent-hashing", "mmh3_ch"), ("fast-hashing", "mmh3_ch"),
    ("fast-hashing", "carbon_ch"), ("jump-hashing", None),
])
@pytest.mark.parametrize("rf", [1, 2, 3])
def test_replicas_are_distinct_and_spread(method, hash_type, rf):
    router = make_router(THREE, method, hash_type, rf)
    counts = [0, 0, 0]
    for i in range(3000):
        chosen = router.route(f"servers.host{i}.cpu.user")
        assert len(chosen) == rf == len(set(chosen))
        counts[chosen[0]] += 1
    assert min(counts) > 600, counts  # every destination owns a fair share


def test_diverse_replicas_prefer_other_hosts():
    four = parse_destinations(["10.0.0.1:2004:a", "10.0.0.1:2104:b",
                               "10.0.0.2:2004:a", "10.0.0.2:2104:b"])
    router = make_router(four, replication_factor=2, diverse_replicas=True)
    for i in range(500):
        first, second = router.route(f"m{i}")
        assert four[first].host != four[second].host
    # replication 3 over two hosts: only two distinct hosts exist, so two destinations (carbon)
    assert {len(make_router(four, "consistent-hashing", None, 3, True).route(f"m{i}"))
            for i in range(200)} == {2}


def test_place_normalizes():
    router = make_router(THREE)
    path, chosen = router.place("cpu;b=2;a=1")
    assert path == "cpu;a=1;b=2"
    assert router.route("cpu;a=1;b=2") == chosen == router.route("cpu;b=2;a=1")
    assert router.route("cpu;b=2;a=1") is router.route("cpu;b=2;a=1")  # answers built up front
    assert router.select("cpu;a=1;b=2") == chosen  # a key already normalized


def test_the_router_holds_no_cache():
    # Pure: what a caller wants remembered it keeps in bucky.cache (tests/test_cache.py).
    router = make_router(THREE)
    assert not any(isinstance(v, dict) for v in vars(router).values())
    for i in range(1000):
        router.place(f"name{i};b=1;a=2")
    assert not any(isinstance(v, dict) for v in vars(router).values())


def test_a_cached_router_answers_as_the_router():
    router = make_router(THREE, replication_factor=2)
    paths = [f"m{i % 70};b=1;a={i % 3}" for i in range(500)]
    cache = TwoGenerationCache(router.place, 50)
    assert list(map(cache.__getitem__, paths)) == [router.place(p) for p in paths]
    assert list(map(cache.__getitem__, paths)) == [router.place(p) for p in paths]  # warm
    fresh = make_router(THREE, replication_factor=2)
    assert [fresh.route(p) for p in paths] == [cache[p][1] for p in paths]


def test_jump_member_order_follows_carbon_c_relay():
    dests = parse_destinations(["h:1:10", "g:2", "h:3:2", "h:4:1", "f:5"])
    # instances first (numbers compared as numbers), then the ones without, as listed
    assert placement.jump_member_order(dests) == [3, 2, 0, 1, 4]
    dests = parse_destinations(["h:1:b", "h:2:a", "h:3:10"])
    assert placement.jump_member_order(dests) == [2, 1, 0]  # strcmp: "10" < "a" < "b"


@pytest.mark.parametrize("args,option,text", [
    (("rules", None, 1, False), "graphite_relay_method", "expected one of consistent-hashing"),
    (("jump-hashing", "carbon_ch", 1, False), "graphite_hash_type",
     "expected one of jump_fnv1a_ch with graphite_relay_method 'jump-hashing', got 'carbon_ch'"),
    (("consistent-hashing", "jump_fnv1a_ch", 1, False), "graphite_hash_type",
     "expected one of carbon_ch, fnv1a_ch, mmh3_ch"),
    (("broadcast", "carbon_ch", 1, False), "graphite_hash_type", "expected None"),
    (("consistent-hashing", None, 4, False), "graphite_replication_factor",
     "expected at most the number of destinations (3), got 4"),
    (("broadcast", None, 2, False), "graphite_replication_factor", "expected 1 with broadcast"),
    (("jump-hashing", None, 1, True), "graphite_diverse_replicas", "expected False"),
])
def test_check_plan(args, option, text):
    problems = check_plan(THREE, *args)
    assert [p[0] for p in problems] == [option]
    assert text in problems[0][1]
    with pytest.raises(ValueError, match=option):
        make_router(THREE, *args)


def test_mmh3_missing_is_named(monkeypatch):
    monkeypatch.setattr(placement.hashes, "mmh3_available", lambda: False)
    assert check_plan(THREE, "fast-hashing", None, 1, False) == [(
        "graphite_relay_method", "'fast-hashing' hashes with mmh3_ch, which needs the mmh3 "
        "package (pip install mmh3); expected it installed or another hash type")]
    assert check_plan(THREE, "consistent-hashing", "mmh3_ch", 1, False)[0][0] == \
        "graphite_hash_type"
    assert check_plan(THREE, "fast-hashing", "carbon_ch", 1, False) == []


# --- config ---------------------------------------------------------------------------------------


def test_effective_destinations():
    three = effective_destinations(THREE, "ignored", 1)
    assert three == THREE and isinstance(three, tuple)
    assert effective_destinations((), "[::1]", "2104") == (Destination("::1", 2104, None),)
    assert effective_destinations([], "carbon", 2003) == (Destination("carbon", 2003, None),)


def test_config_default_is_the_one_graphite_destination():
    router = graphite_router(config.make_config(graphite_ip="[::1]", graphite_port=2104))
    assert router.destinations == (Destination("::1", 2104, None),)
    assert router.route("a.b") == (0,)
    assert router.describe() == "consistent-hashing (carbon_ch, replication 1) over " \
        "1 destination"


def test_config_cluster():
    cfg = config.make_config(
        graphite_destinations=["127.0.0.1:2004:a", "127.0.0.1:2104:b", "127.0.0.1:2204:c"],
        graphite_relay_method="Consistent-Hashing", graphite_hash_type="fnv1a_ch",
        graphite_replication_factor=2, graphite_diverse_replicas=False)
    router = graphite_router(cfg)
    assert router.destinations == THREE
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # the config travels to every process
    assert router.describe() == "consistent-hashing (fnv1a_ch, replication 2) over " \
        "3 destinations"
    assert router.route("x") == make_router(THREE, "consistent-hashing", "fnv1a_ch",
                                            2).route("x")


def test_readme_example_ring_matches_graphite_webs_carbonlink_hosts():
    # README "Graphite clusters": graphite-web's CARBONLINK_HOSTS name the same hosts and
    # instances at other ports; the port is not part of the ring, so both rings agree
    cfg = config.make_config(
        graphite_destinations=["127.0.0.1:2004:a", "127.0.0.1:2104:b", "127.0.0.1:2204:c"],
        graphite_pickle_enabled=True, graphite_relay_method="consistent-hashing")
    bucky = graphite_router(cfg)
    carbonlink = make_router(parse_destinations(
        ["127.0.0.1:7002:a", "127.0.0.1:7102:b", "127.0.0.1:7202:c"]), "consistent-hashing",
        "carbon_ch")
    for name in varied_names(2000):
        assert bucky.route(name) == carbonlink.route(name)
    localhost = make_router(parse_destinations(["localhost:2004:a", "localhost:2104:b",
                                                "localhost:2204:c"]))
    assert any(bucky.route(n) != localhost.route(n) for n in varied_names(100))


@pytest.mark.parametrize("options,expected", [
    ({"graphite_destinations": ["a:1:x", "b"]},
     "graphite_destinations: expected host:port[:instance] (IPv6 as [::1]:2004:a): 'b' has no "
     "port, got ['a:1:x', 'b']"),
    ({"graphite_destinations": ["a:2004", "a:2104"]},
     "graphite_destinations: expected each (host, instance) once: 'a:2004' and 'a:2104' are both"),
    ({"graphite_destinations": 5}, "graphite_destinations: expected a list of host:port"),
    ({"graphite_relay_method": "rules"},
     "graphite_relay_method: expected one of 'consistent-hashing', 'fast-hashing', "
     "'jump-hashing', 'broadcast', got 'rules'"),
    ({"graphite_hash_type": "md5"}, "graphite_hash_type: expected one of 'carbon_ch'"),
    ({"graphite_relay_method": "jump-hashing", "graphite_hash_type": "carbon_ch"},
     "graphite_hash_type: expected one of jump_fnv1a_ch with graphite_relay_method "
     "'jump-hashing', got 'carbon_ch'"),
    ({"graphite_replication_factor": 2},
     "graphite_replication_factor: expected at most the number of destinations (1), got 2"),
    ({"graphite_destinations": ["a:1", "b:1"], "graphite_replication_factor": 3},
     "graphite_replication_factor: expected at most the number of destinations (2), got 3"),
    ({"graphite_replication_factor": 0}, "graphite_replication_factor: expected an integer >= 1"),
    ({"graphite_diverse_replicas": "maybe"}, "graphite_diverse_replicas: expected True or False"),
])
def test_config_errors_name_option_form_and_value(tmp_path, options, expected):
    path = tmp_path / "bucky.conf"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in options.items()))
    with pytest.raises(ConfigError) as err:
        config.load(str(path))
    assert str(err.value) == f"{path}: {expected}" or str(err.value).startswith(
        f"{path}: {expected}")
    assert "\n" not in str(err.value)


def test_config_fast_hashing_without_mmh3(monkeypatch):
    monkeypatch.setattr(placement.hashes, "mmh3_available", lambda: False)
    with pytest.raises(ConfigError, match="graphite_relay_method: 'fast-hashing' hashes with "
                                          "mmh3_ch, which needs the mmh3 package"):
        config.make_config(graphite_destinations=["a:1", "b:1"],
                           graphite_relay_method="fast-hashing")


# --- 5(a): identical to carbon's own routers ------------------------------------------------------

DESTINATION_SETS = [
    ["127.0.0.1:2004"],
    ["127.0.0.1:2004:a"],
    ["10.0.0.1:2004", "10.0.0.2:2004"],
    ["127.0.0.1:2004:a", "127.0.0.1:2104:b", "127.0.0.1:2204:c"],
    # no instances: for fnv1a_ch every node's replica keys are "0-None".."99-None", so the
    # positions collide and carbon moves each later one up (the order of the list matters)
    ["carbon-a.example:2004", "carbon-b.example:2004", "carbon-c.example:2004"],
    ["10.0.0.1:2004:a", "10.0.0.1:2104:b", "10.0.0.2:2004:a", "10.0.0.2:2104:b"],
    ["[::1]:2004:1", "127.0.0.1:2004", "127.0.0.1:2104:x", "höst.example:2004:ü",
     "10.1.1.1:2004:1"],
]
HASHINGS = [
    ("consistent-hashing", None), ("consistent-hashing", "fnv1a_ch"),
    ("consistent-hashing", "mmh3_ch"), ("fast-hashing", None), ("fast-hashing", "carbon_ch"),
    ("fast-hashing", "fnv1a_ch"),
]


def _configs(method, hash_type):
    out = []
    for texts in DESTINATION_SETS:
        dests = parse_destinations(texts)
        for rf in range(1, min(3, len(dests)) + 1):
            for diverse in (False, True):
                out.append({"destinations": [list(d) for d in dests], "method": method,
                            "hash_type": hash_type, "replication_factor": rf,
                            "diverse_replicas": diverse})
    return out


def _run_carbon(tmp_path, names, configs, need_mmh3):
    if not (os.access(DEBIAN_PYTHON, os.X_OK) and os.path.isdir(CARBON_DIR)):
        missing("carbon is not installed (Debian package graphite-carbon, /usr/bin/python3)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"}
    if need_mmh3:
        # carbon's mmh3_ch needs the mmh3 module; Debian's python3 has none, so lend it ours
        # (both are CPython 3.11, same ABI) through a directory holding only that module
        spec = importlib.util.find_spec("mmh3")
        if spec is None or not spec.origin:
            missing("the mmh3 package is not installed (pip install mmh3)")
        lend = tmp_path / "mmh3-only"
        lend.mkdir()
        (lend / Path(spec.origin).name).symlink_to(spec.origin)
        env["PYTHONPATH"] = str(lend)
    proc = subprocess.run([DEBIAN_PYTHON, str(DATA / "carbon_placement.py")],
                          input=json.dumps({"names": names, "configs": configs}),
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and "No module named 'carbon" in proc.stderr:
        missing("carbon is not importable by /usr/bin/python3 (Debian package graphite-carbon)")
    if need_mmh3 and "Install \"mmh3\"" in proc.stderr:
        missing("Debian's python3 cannot load the mmh3 module for carbon's mmh3_ch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def names():
    return varied_names(10_000)


@pytest.mark.parametrize("method,hash_type", HASHINGS)
def test_placement_equals_carbons_routers(tmp_path, names, method, hash_type):
    configs = _configs(method, hash_type)
    need_mmh3 = "mmh3_ch" in (hash_type, placement.default_hash_type(method))
    carbon = _run_carbon(tmp_path, names, configs, need_mmh3)
    normalized = zip(names, map(normalize_path, names), carbon["normalized"], strict=True)
    mismatched = [(n, mine, theirs) for n, mine, theirs in normalized if mine != theirs]
    assert mismatched == []
    for cfg, expected in zip(configs, carbon["placements"], strict=True):
        router = make_router([Destination(*d) for d in cfg["destinations"]], method, hash_type,
                             cfg["replication_factor"], cfg["diverse_replicas"])
        differ = []
        for name, want in zip(names, expected, strict=True):
            if "".join(map(str, router.route(name))) != want:
                differ.append((name, router.route(name), want))
        assert differ == [], (cfg, len(differ), differ[:5])


def test_listing_order_decides_collisions():
    # README: where ring positions collide the destination listed first keeps its place. With
    # fnv1a_ch and no instances every replica key is "i-None": all collide, so order decides.
    hosts = ["carbon-a.example:2004", "carbon-b.example:2004", "carbon-c.example:2004"]
    forward = make_router(parse_destinations(hosts), "consistent-hashing", "fnv1a_ch")
    backward = make_router(parse_destinations(hosts[::-1]), "consistent-hashing", "fnv1a_ch")
    names = varied_names(300)
    host = lambda router, n: router.destinations[router.route(n)[0]].host  # noqa: E731
    assert any(host(forward, n) != host(backward, n) for n in names)
    # without collisions (carbon_ch here) the order does not matter
    forward = make_router(parse_destinations(hosts))
    backward = make_router(parse_destinations(hosts[::-1]))
    assert all(host(forward, n) == host(backward, n) for n in names)
