"""The `collectd` module's API against a fake runtime: members, checks, conversions, names.

Expected values and messages are those collectd 5.12's python plugin gives (probed on Debian).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from bucky.plugin_host import collectd_module as cm
from bucky.plugin_host.confparse import parse_text
from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, GAUGE, ValueList
from bucky.protocol.collectd_records import Notification as NotificationRecord
from bucky.protocol.typesdb import load_types_db

TYPES_DB = os.path.join(os.path.dirname(__file__), "..", "data", "plugin_host", "types.db")


class FakeRuntime:
    encoding = "utf-8"

    def __init__(self) -> None:
        self.datasets = load_types_db([TYPES_DB])
        self.values: list[tuple[ValueList, dict]] = []
        self.written: list[tuple[ValueList, dict, str]] = []
        self.notifications: list[tuple[NotificationRecord, dict]] = []
        self.registered: list[tuple[str, Any, Any, str, float]] = []
        self.flushes: list[tuple] = []
        self.logs: list[tuple[int, str, str]] = []

    def dataset(self, type_name: str) -> Any:
        return self.datasets.get(type_name)

    def dispatch_values(self, record: ValueList, meta: dict) -> None:
        self.values.append((record, meta))

    def write_values(self, record: ValueList, meta: dict, destination: str) -> None:
        self.written.append((record, meta, destination))

    def dispatch_notification(self, record: NotificationRecord, meta: dict) -> None:
        self.notifications.append((record, meta))

    def register(self, kind: str, callback: Any, data: Any, name: str, interval: float) -> None:
        self.registered.append((kind, callback, data, name, interval))

    def unregister(self, kind: str, name: str) -> bool:
        for entry in self.registered:
            if entry[0] == kind and entry[3] == name:
                self.registered.remove(entry)
                return True
        return False

    def flush(self, plugin: str | None, timeout: int, identifier: str | None) -> None:
        self.flushes.append((plugin, timeout, identifier))

    def log(self, severity: int, message: str, module: str) -> None:
        self.logs.append((severity, message, module))


@pytest.fixture()
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture()
def collectd(runtime: FakeRuntime) -> Any:
    return cm.build_module(runtime)


def test_module_contents_and_constants(collectd: Any) -> None:
    public = {name for name in dir(collectd) if not name.startswith("_")}
    assert public == {
        "CollectdError", "Config", "DS_TYPE_ABSOLUTE", "DS_TYPE_COUNTER", "DS_TYPE_DERIVE",
        "DS_TYPE_GAUGE", "LOG_DEBUG", "LOG_ERROR", "LOG_INFO", "LOG_NOTICE", "LOG_WARNING",
        "NOTIF_FAILURE", "NOTIF_OKAY", "NOTIF_WARNING", "Notification", "Signed", "Unsigned",
        "Values", "debug", "error", "flush", "get_dataset", "info", "notice", "register_config",
        "register_flush", "register_init", "register_log", "register_notification",
        "register_read", "register_shutdown", "register_write", "unregister_config",
        "unregister_flush", "unregister_init", "unregister_log", "unregister_notification",
        "unregister_read", "unregister_shutdown", "unregister_write", "warning",
    }
    assert (collectd.LOG_DEBUG, collectd.LOG_INFO, collectd.LOG_NOTICE, collectd.LOG_WARNING,
            collectd.LOG_ERROR) == (7, 6, 5, 4, 3)
    assert (collectd.NOTIF_FAILURE, collectd.NOTIF_WARNING, collectd.NOTIF_OKAY) == (1, 2, 4)
    assert (collectd.DS_TYPE_COUNTER, collectd.DS_TYPE_GAUGE, collectd.DS_TYPE_DERIVE,
            collectd.DS_TYPE_ABSOLUTE) == ("counter", "gauge", "derive", "absolute")
    assert repr(collectd.Values) == "<class 'collectd.Values'>"
    assert issubclass(collectd.CollectdError, Exception)
    assert isinstance(collectd.Signed(5), int) and repr(collectd.Unsigned(5)) == "5"


def test_values_defaults_members_and_repr(collectd: Any) -> None:
    vl = collectd.Values()
    assert (vl.host, vl.plugin, vl.plugin_instance, vl.type, vl.type_instance, vl.time,
            vl.interval, vl.values, vl.meta) == ("", "", "", "", "", 0.0, 0.0, [], {})
    assert repr(vl) == "collectd.Values(type='')"
    full = collectd.Values("gauge", [1, 2], "pi", "ti", "pl", "h", 1, 2)
    assert repr(full) == ("collectd.Values(type='gauge',type_instance='ti',plugin='pl',"
                          "plugin_instance='pi',host='h',time=1.0,interval=2.0,values=[1, 2])")
    assert repr(collectd.Values(type="gauge", plugin="p", values=[1], time=5, interval=3,
                                meta={"a": 1})) == ("collectd.Values(type='gauge',plugin='p',"
                                                    "time=5.0,interval=3.0,values=[1],"
                                                    "meta={'a': 1})")
    vl.host = b"bytes-host"
    vl.plugin = "a\0b"
    vl.type_instance = "x" * 200
    vl.interval = 2.5
    assert (vl.host, vl.plugin, len(vl.type_instance), vl.interval) == ("bytes-host", "a", 127,
                                                                        2.5)
    with pytest.raises(TypeError, match="expected str or bytes, int found"):
        vl.host = 5
    with pytest.raises(TypeError, match="Cannot delete this attribute"):
        del vl.host
    with pytest.raises(TypeError, match="must be real number, not str"):
        vl.time = "x"
    with pytest.raises(TypeError, match="Dataset nope not found"):
        vl.type = "nope"
    with pytest.raises(TypeError, match="Dataset  not found"):
        vl.type = ""
    with pytest.raises(TypeError, match="Dataset nope not found"):
        collectd.Values(type="nope")


def test_dispatch_checks_and_converts_like_collectd(collectd: Any, runtime: FakeRuntime) -> None:
    vl = collectd.Values(type="gauge")
    with pytest.raises(RuntimeError, match="type not set"):
        collectd.Values().dispatch()
    with pytest.raises(RuntimeError, match="type gauge needs 1 values, got 2"):
        vl.dispatch(values=[1, 2])
    with pytest.raises(ValueError, match="could not convert string to float: 'x'"):
        vl.dispatch(values=["x"])
    with pytest.raises(TypeError, match="float"):
        vl.dispatch(values=[None])
    with pytest.raises(TypeError, match="values must be list or tuple"):
        vl.dispatch(values=iter([1]))
    with pytest.raises(TypeError, match="meta must be a dict"):
        vl.dispatch(values=[1], meta=[1])
    with pytest.raises(OverflowError, match="can't convert negative int to unsigned"):
        collectd.Values(type="counter").dispatch(values=[-1])
    with pytest.raises(OverflowError):
        collectd.Values(type="derive").dispatch(values=[2**63])
    assert runtime.values == []

    vl.dispatch(values=["1.5"])
    collectd.Values(type="mixed").dispatch(values=[1, 1.7, "-12", 2**64 - 1])
    first, mixed = (record for record, _ in runtime.values)
    assert first == ValueList("", "python", "", "gauge", "", 0.0, 0.0, ((GAUGE, 1.5),))
    assert mixed.values == ((GAUGE, 1.0), (COUNTER, 1), (DERIVE, -12), (ABSOLUTE, 2**64 - 1))
    assert [type(v) for _, v in mixed.values] == [float, int, int, int]


def test_dispatch_arguments_override_members_for_one_call(collectd: Any,
                                                          runtime: FakeRuntime) -> None:
    vl = collectd.Values(type="gauge", plugin="p", host="h", values=[1])
    vl.dispatch(plugin_instance="pi", type_instance="ti", time=3, interval=4, values=(2,))
    vl.dispatch("load", [1, 2, 3], plugin="q")
    (one, _), (two, _) = runtime.values
    assert one == ValueList("h", "p", "pi", "gauge", "ti", 3.0, 4.0, ((GAUGE, 2.0),))
    assert two == ValueList("h", "q", "", "load", "", 0.0, 0.0,
                            ((GAUGE, 1.0), (GAUGE, 2.0), (GAUGE, 3.0)))
    assert (vl.plugin, vl.plugin_instance, vl.values) == ("p", "", [1])


def test_write_with_and_without_destination(collectd: Any, runtime: FakeRuntime) -> None:
    vl = collectd.Values(type="gauge", values=[1])
    vl.write()
    vl.write("python.dest", plugin="w")
    assert len(runtime.values) == 1
    ((record, _, destination),) = runtime.written
    assert (record.plugin, destination) == ("w", "python.dest")


def test_meta_is_stored_as_collectd_stores_it(collectd: Any, runtime: FakeRuntime) -> None:
    meta = {"b": True, "f": 1.5, "i": 5, "big": 2**63, "huge": 2**64, "s": b"x", "o": [1],
            "signed": collectd.Signed(-3), "unsigned": collectd.Unsigned(3), 7: "not a key"}
    collectd.Values(type="gauge", values=[1], meta=meta).dispatch()
    ((_, stored),) = runtime.values
    assert stored == {"b": True, "f": 1.5, "i": 5, "big": 2**63, "s": "x", "o": "[1]",
                      "signed": -3, "unsigned": 3}
    assert type(stored["i"]) is cm.Signed and type(stored["big"]) is cm.Unsigned
    assert type(stored["signed"]) is cm.Signed and type(stored["unsigned"]) is cm.Unsigned
    assert stored["b"] is True


def test_notification_members_dispatch_and_repr(collectd: Any, runtime: FakeRuntime) -> None:
    n = collectd.Notification()
    assert (n.host, n.plugin, n.type, n.message, n.severity, n.time, n.meta) == (
        "", "", "", "", 0, 0.0, {})
    assert repr(n) == "collectd.Notification(type='')"
    n = collectd.Notification(type="gauge", message="m", severity=collectd.NOTIF_WARNING,
                              plugin="p")
    assert repr(n) == "collectd.Notification(type='gauge',plugin='p',severity=2,message='m')"
    with pytest.raises(TypeError):
        n.severity = 1.5
    with pytest.raises(RuntimeError, match="type not set"):
        collectd.Notification().dispatch()
    with pytest.raises(TypeError, match="Dataset nope not found"):
        collectd.Notification(type="nope")
    n.message = "x" * 300
    n.dispatch(severity=collectd.NOTIF_FAILURE, plugin="", meta={"k": 1})
    ((record, meta),) = runtime.notifications
    assert record == NotificationRecord("", "python", "", "gauge", "", 0.0, 1, "x" * 255)
    assert meta == {"k": 1}


def test_records_become_callback_objects(collectd: Any) -> None:
    record = ValueList("h", "p", "pi", "mixed", "ti", 10.5, 10.0,
                       ((GAUGE, 1), (COUNTER, 2), (DERIVE, -3), (ABSOLUTE, 4)))
    vl = collectd.Values.from_record(record, {"m": cm.Signed(1)})
    assert isinstance(vl, collectd.Values)
    assert (vl.host, vl.plugin, vl.plugin_instance, vl.type, vl.type_instance, vl.time,
            vl.interval, vl.values, vl.meta) == ("h", "p", "pi", "mixed", "ti", 10.5, 10.0,
                                                 [1.0, 2, -3, 4], {"m": 1})
    note = collectd.Notification.from_record(
        NotificationRecord("h", "p", "", "gauge", "", 5.0, 4, "ok"))
    assert (note.host, note.severity, note.message, note.time) == ("h", 4, "ok", 5.0)


def test_register_names_data_and_unregister(collectd: Any, runtime: FakeRuntime) -> None:
    def read(*args: Any) -> None:
        return None

    assert collectd.register_read(read) == f"python.{__name__}"
    assert collectd.register_read(read, 1.5, None, "foo") == "python.foo"
    assert collectd.register_init(read, name="x.y") == "python.x.y"
    assert collectd.register_write(read, "DATA") == f"python.{__name__}"
    kinds = [(k, d, n, i) for k, _, d, n, i in runtime.registered]
    assert kinds == [("read", cm.NO_DATA, f"python.{__name__}", 0.0),
                     ("read", None, "python.foo", 1.5),
                     ("init", cm.NO_DATA, "python.x.y", 0.0),
                     ("write", "DATA", f"python.{__name__}", 0.0)]
    with pytest.raises(TypeError, match="callback needs a be a callable object."):
        collectd.register_init(5)
    with pytest.raises(TypeError, match="must be real number"):
        collectd.register_read(read, "soon")
    collectd.unregister_read("python.foo")
    collectd.unregister_read(read)  # by callback: python.<its module>
    with pytest.raises(RuntimeError, match="Unable to unregister init callback 'python.nope'."):
        collectd.unregister_init("python.nope")
    with pytest.raises(RuntimeError, match="Unable to unregister read callback 'foo'."):
        collectd.unregister_read("foo")  # the identifier is taken as given
    with pytest.raises(TypeError, match="string or a callable"):
        collectd.unregister_read(5)
    assert [k for k, *_ in runtime.registered] == ["init", "write"]


def test_flush_log_functions_and_get_dataset(collectd: Any, runtime: FakeRuntime) -> None:
    collectd.flush()
    collectd.flush("python.x", 5, "host/plugin/type")
    assert runtime.flushes == [(None, -1, None), ("python.x", 5, "host/plugin/type")]
    collectd.error("e")
    collectd.warning("w")
    collectd.notice("n")
    collectd.info(b"i")
    collectd.debug("d")
    assert runtime.logs == [(3, "e", __name__), (4, "w", __name__), (5, "n", __name__),
                            (6, "i", __name__), (7, "d", __name__)]
    with pytest.raises(TypeError, match="argument 1 must be str, bytes or bytearray, not int"):
        collectd.info(5)
    assert collectd.get_dataset("if_octets") == [("rx", "derive", 0.0, None),
                                                 ("tx", "derive", 0.0, None)]
    assert collectd.get_dataset("load")[0] == ("shortterm", "gauge", 0.0, 5000.0)
    with pytest.raises(TypeError, match="Dataset nope not found"):
        collectd.get_dataset("nope")


def test_config_objects() -> None:
    module = parse_text('<Module spam>\n  spam "wonderful" "lovely"\n  <Sub 1>\n    '
                        "On true\n  </Sub>\n</Module>\n").children[0]
    root = cm.Config.from_node(module)
    assert (root.key, root.values, root.parent) == ("Module", ("spam",), None)
    spam, sub = root.children
    assert (spam.key, spam.values, spam.children, spam.parent) == (
        "spam", ("wonderful", "lovely"), (), root)
    assert sub.children[0].parent is sub and sub.children[0].values == (True,)
    assert repr(root) == "<collectd.Config root node 'Module'>"
    assert repr(spam) == "<collectd.Config node 'spam'>"
    made = cm.Config("k")
    assert (made.key, made.parent, made.values, made.children) == ("k", None, (), ())
    with pytest.raises(TypeError, match="argument 1 must be str"):
        cm.Config(5)
