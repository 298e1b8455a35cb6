"""Bucky 2 names for collectd values: built-in converters, priorities, entry points, sanitizing."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.aggregate.collectd import CollectdAggregator
from bucky.aggregate.collectd_names import (
    ENTRY_POINT_GROUP,
    ConverterTable,
    build_converter_table,
    entry_point_converters,
    run_converter,
    sanitize,
)
from bucky.protocol.collectd_records import DERIVE, GAUGE, ValueList
from bucky.protocol.graphite import WHITESPACE
from bucky.protocol.typesdb import DataSet, DataSource

DATASETS = {
    "cpu": DataSet("cpu", (DataSource("value", DERIVE, 0.0, None),)),
    "percent": DataSet("percent", (DataSource("value", GAUGE, 0.0, 100.1),)),
    "if_octets": DataSet("if_octets", (DataSource("rx", DERIVE, 0.0, None),
                                       DataSource("tx", DERIVE, 0.0, None))),
    "memory": DataSet("memory", (DataSource("value", GAUGE, 0.0, 281474976710656.0),)),
    "df_complex": DataSet("df_complex", (DataSource("value", GAUGE, 0.0, None),)),
    "load": DataSet("load", tuple(DataSource(n, GAUGE, 0.0, 5000.0)
                                  for n in ("shortterm", "midterm", "longterm"))),
    "gauge": DataSet("gauge", (DataSource("value", GAUGE, None, None),)),
    "value": DataSet("value", (DataSource("value", GAUGE, None, None),)),
}


def sample(plugin: str, plugin_instance: str, type_: str, type_instance: str,
           value_name: str = "value", host: str = "web-01.example.org") -> dict[str, Any]:
    """Bucky 2's sample dict."""
    return {"host": host, "plugin": plugin, "plugin_instance": plugin_instance, "type": type_,
            "type_instance": type_instance, "time": 1700000000.0, "interval": 10.0,
            "value": 1.0, "value_name": value_name, "value_type": GAUGE}


def name_of(table: ConverterTable, *args: str, **kw: str) -> str | None:
    return run_converter(table, sample(*args, **kw))[0]


@pytest.fixture
def table() -> ConverterTable:
    return build_converter_table(None, use_entry_points=False)


def gauges(agg: CollectdAggregator, *vls: ValueList) -> list[tuple]:
    return agg.process(list(vls), now=0.0)


# -- Bucky 2's built-in converters ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (("cpu", "0", "cpu", "user"), "cpu.0.user"),
    (("cpu", "3", "percent", "idle"), "cpu.3.idle"),
    (("interface", "eth0", "if_octets", "", "rx"), "interface.eth0.if_octets.rx"),
    (("interface", "", "if_octets", "eth0", "tx"), "interface.eth0.if_octets.tx"),
    (("interface", "lo", "if_errors", "x", "rx"), "interface.lo.x.if_errors.rx"),
    (("memory", "", "memory", "used"), "memory.used"),
    (("df", "root", "df_complex", "free"), "df.root.df_complex.free"),
    (("df", "", "df_complex", "reserved"), "df.df_complex.reserved"),
    (("load", "", "load", "", "shortterm"), "load.load.shortterm"),
    (("load", "", "load", "", "longterm"), "load.load.longterm"),
    (("vectest", "sys", "gauge", "g"), "vectest.sys.gauge.g"),
    (("vectest", "", "gauge", ""), "vectest.gauge"),
    (("swap", "", "value", "", "value"), "swap"),  # type and ds named "value" are left out
    (("tail", "applog", "counter", "requests"), "tail.applog.counter.requests"),
    (("mysql", "db", "mysql_qcache", "", "hits"), "mysql.db.mysql_qcache.hits"),
    # dots in instances stay: Graphite sees extra levels, exactly as with Bucky 2
    (("vectest", "x.y", "gauge", "v1.2-dotted"), "vectest.x.y.gauge.v1.2-dotted"),
    (("cpu", "a.b", "cpu", "c.d"), "cpu.a.b.c.d"),
    # the default converter strips surrounding blanks of each part, like Bucky 2
    ((" disk ", " sda ", "disk_ops", " x "), "disk.sda.disk_ops.x"),
])
def test_bucky2_names(table, args, expected):
    assert name_of(table, *args) == expected


def test_default_name_through_the_aggregator(table):
    agg = CollectdAggregator(DATASETS, table)
    out = gauges(agg, ValueList("h.example", "load", "", "load", "", 10.0, 10.0,
                                ((GAUGE, 0.5), (GAUGE, 0.25), (GAUGE, 0.125))))
    assert out == [("h.example", "load.load.shortterm", 0.5, 10),
                   ("h.example", "load.load.midterm", 0.25, 10),
                   ("h.example", "load.load.longterm", 0.125, 10)]


# -- priorities and sources -----------------------------------------------------------------------

def test_config_converter_beats_builtin():
    table = build_converter_table({"cpu": lambda s: ["mycpu", s["type_instance"]]}, False)
    assert name_of(table, "cpu", "0", "cpu", "user") == "mycpu.user"
    assert table.sources["cpu"] == "config"


def test_builtin_kept_when_priority_is_not_larger():
    class Low:
        PRIORITY = -1

        def __call__(self, s):
            return ["low"]

    table = build_converter_table({"memory": Low()}, False)
    assert name_of(table, "memory", "", "memory", "used") == "memory.used"
    assert any("ignored" in n for n in table.notes)


def test_default_converter_can_be_replaced():
    table = build_converter_table({"_default": lambda s: ["all", s["plugin"]]}, False)
    assert name_of(table, "nginx", "", "connections", "active") == "all.nginx"
    assert name_of(table, "cpu", "0", "cpu", "user") == "cpu.0.user"


def test_entry_points_follow_priority():
    class Plain:  # PRIORITY 0 by default: does not beat the config converter (also 0)
        def __call__(self, s):
            return ["ep"]

    class Strong:
        PRIORITY = 10

        def __call__(self, s):
            return ["strong", s["type_instance"]]

    eps = [("nginx", Plain(), "ep:a"), ("cpu", Strong(), "ep:b"), ("new", Plain(), "ep:c")]
    table = build_converter_table({"nginx": lambda s: ["cfg"]}, True,
                                  load_entry_points=lambda: eps)
    assert name_of(table, "nginx", "", "connections", "") == "cfg"
    assert name_of(table, "cpu", "0", "cpu", "user") == "strong.user"
    assert name_of(table, "new", "", "gauge", "") == "ep"
    assert table.sources["cpu"] == "ep:b"


def test_entry_points_disabled_are_not_loaded():
    def boom():
        raise AssertionError("must not be called")

    build_converter_table(None, False, load_entry_points=boom)


def test_real_entry_point_from_an_installed_distribution(tmp_path, monkeypatch):
    dist = tmp_path / "bucky_test_conv-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bucky-test-conv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nnginx = bucky_test_conv_mod:nginx_converter\n")
    (tmp_path / "bucky_test_conv_mod.py").write_text(textwrap.dedent("""
        class NginxConverter:
            PRIORITY = 5
            def __call__(self, sample):
                return ["web", sample["plugin"], sample["type_instance"]]
        nginx_converter = NginxConverter()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = [item for item in entry_point_converters() if item[0] == "nginx"]
        assert len(found) == 1 and found[0][2] == "entry point bucky_test_conv_mod:nginx_converter"
        table = build_converter_table(None, True)
        assert name_of(table, "nginx", "", "connections", "active") == "web.nginx.active"
    finally:
        sys.modules.pop("bucky_test_conv_mod", None)


def test_broken_entry_point_is_a_clear_start_up_error(tmp_path, monkeypatch):
    dist = tmp_path / "bucky_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bucky-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = bucky_no_such_module_xyz:conv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="broken.*bucky_no_such_module_xyz"):
        build_converter_table(None, True)


def test_sequence_of_converters_needs_a_plugin_attribute():
    def disk(s):
        return ["d", s["plugin_instance"]]

    disk.PLUGIN = ("disk", "disk2")
    table = build_converter_table([disk], False)
    assert name_of(table, "disk2", "sda", "disk_ops", "") == "d.sda"
    with pytest.raises(TypeError, match="PLUGIN"):
        build_converter_table([lambda s: ["x"]], False)
    with pytest.raises(TypeError):
        build_converter_table({"cpu": "not callable"}, False)


# -- dropping, failing ----------------------------------------------------------------------------

def test_none_drops_the_value_and_is_counted():
    table = build_converter_table({"df": lambda s: None}, False)
    agg = CollectdAggregator(DATASETS, table)
    for t in (1, 2):
        assert gauges(agg, ValueList("h", "df", "root", "df_complex", "free", t, 10, (
            (GAUGE, 1.0),))) == []
    assert agg.counters["dropped.converter_none"] == 2 and not agg.events


def test_raising_converter_drops_counts_and_reports_once_per_series():
    calls = []

    def bad(s):
        calls.append(s)
        raise KeyError("nope")

    agg = CollectdAggregator(DATASETS, build_converter_table({"cpu": bad}, False))
    vl = ValueList("h", "cpu", "0", "percent", "user", 1.0, 10.0, ((GAUGE, 5.0),))
    assert gauges(agg, vl, vl._replace(time=2.0)) == []
    assert agg.counters["dropped.converter_error"] == 2
    assert len(calls) == 1  # the failure is remembered with the series
    [(key, message, error)] = agg.events
    assert key == "converter_error:cpu" and isinstance(error, KeyError) and "'cpu'" in message


@pytest.mark.parametrize("result", [[], [""], ["  "]])
def test_empty_names_are_dropped(result):
    agg = CollectdAggregator(DATASETS, build_converter_table({"x": lambda s: result}, False))
    assert gauges(agg, ValueList("h", "x", "", "gauge", "", 1, 10, ((GAUGE, 1.0),))) == []
    assert agg.counters["dropped.empty_name"] == 1


def test_non_string_parts_are_a_converter_error():
    agg = CollectdAggregator(DATASETS, build_converter_table({"x": lambda s: ["a", 1]}, False))
    assert gauges(agg, ValueList("h", "x", "", "gauge", "", 1, 10, ((GAUGE, 1.0),))) == []
    assert agg.counters["dropped.converter_error"] == 1


def test_converters_get_bucky2_sample_dicts_and_run_once_per_series():
    seen = []

    def spy(s):
        seen.append(dict(s))
        return ["spy", s["value_name"]]

    agg = CollectdAggregator(DATASETS, build_converter_table({"net": spy}, False))
    vl = ValueList("h1", "net", "eth0", "if_octets", "", 5.5, 10.0, ((DERIVE, 7), (DERIVE, 9)))
    gauges(agg, vl, vl._replace(time=6.5, values=((DERIVE, 8), (DERIVE, 12))))
    assert seen == [
        {"host": "h1", "plugin": "net", "plugin_instance": "eth0", "type": "if_octets",
         "type_instance": "", "time": 5.5, "interval": 10.0, "value": 7, "value_name": "rx",
         "value_type": DERIVE},
        {"host": "h1", "plugin": "net", "plugin_instance": "eth0", "type": "if_octets",
         "type_instance": "", "time": 5.5, "interval": 10.0, "value": 9, "value_name": "tx",
         "value_type": DERIVE},
    ]


def test_converter_may_rewrite_the_host_like_bucky2():
    def rehost(s):
        s["host"] = "other"
        return ["x"]

    agg = CollectdAggregator(DATASETS, build_converter_table({"p": rehost}, False))
    out = gauges(agg, ValueList("h", "p", "", "gauge", "", 1, 10, ((GAUGE, 1.0),)))
    assert out == [("other", "x", 1.0, 1)]


# -- sanitizing -----------------------------------------------------------------------------------

def test_hostile_names_never_reach_a_path(table):
    agg = CollectdAggregator(DATASETS, table)
    out = gauges(agg, ValueList("evil\nhost 1\0", "vec\ntest", "a b\0c", "gauge", "x\ty;z=1\r",
                                1, 10, ((GAUGE, 1.0),)))
    assert out == [("evil_host_1_", "vec_test.a_b_c.gauge.x_y_z=1", 1.0, 1)]


def test_sanitise_covers_every_whitespace_and_control_character():
    for code in range(0x3100):
        char = chr(code)
        if char.isspace() or not char.isprintable() and code < 0xA0:
            assert sanitize(char) == "_", hex(code)
    assert sanitize("ok.name-1_ü") == "ok.name-1_ü"


def test_every_unicode_space_from_the_wire_or_a_converter_becomes_an_underscore():
    table = build_converter_table({"cpu": lambda s: [f"my{s['plugin_instance']}", "x"]}, False)
    for char in sorted(WHITESPACE):
        name, host, _, error = run_converter(
            table, sample("cpu", f"0{char}1", "cpu", "user", host=f"web{char}01"))
        assert (name, host, error) == ("my0_1.x", "web_01", None), hex(ord(char))
        assert name_of(build_converter_table(None, False), "nginx", f"a{char}b", "connections",
                       f"c{char}d") == "nginx.a_b.connections.c_d"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=5, max_size=5))
def test_no_wire_text_breaks_a_graphite_line(fields):
    host, plugin, pi, ti, ds = fields
    name, out_host, why, error = run_converter(
        build_converter_table(None, False), sample(plugin, pi, "gauge", ti, ds, host=host))
    assert error is None
    for text in (name or "", out_host):
        assert not any(c.isspace() or c in "\0;" or ord(c) < 0x20 or c == "\x7f" for c in text)
