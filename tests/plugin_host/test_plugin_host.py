"""PluginHost: loading, callback order, read scheduling and backoff, threads, dispatch, shutdown.

Clocks are injected: `run_reads(now)` gets made-up times; threads are awaited by polling a
condition with a deadline.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bucky.errors import ConfigError
from bucky.plugin_host.confparse import parse_text
from bucky.plugin_host.host import MAX_READ_INTERVAL, PluginHost, PythonSetup
from bucky.protocol.collectd_records import GAUGE, ValueList
from bucky.protocol.collectd_records import Notification as NotificationRecord
from bucky.protocol.typesdb import load_types_db

TYPES_DB = os.path.join(os.path.dirname(__file__), "..", "data", "plugin_host", "types.db")
WALL_TIME = 1_700_000_000.0


def poll(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        time.sleep(0.001)


@pytest.fixture()
def make_host() -> Iterator[Callable[..., PluginHost]]:
    hosts: list[PluginHost] = []

    def make(**options: Any) -> PluginHost:
        options.setdefault("hostname", "testhost")
        options.setdefault("wall_clock", lambda: WALL_TIME)
        options.setdefault("shutdown_timeout", 2.0)
        host = PluginHost(load_types_db([TYPES_DB]), **options)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.shutdown()


def statements(text: str) -> tuple:
    return PythonSetup.from_tree(parse_text(text, "py.conf"), "py.conf").statements


def idle(host: PluginHost) -> Callable[[], bool]:
    return lambda: not any(task.running for task in host._reads.values())


def write_plugin(directory: Any, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(source)


PLUGIN_ORDER = '''
import collectd
EVENTS = []

def configure(config, *data):
    EVENTS.append(("config", config.key, config.values, [c.key for c in config.children],
                   data))

def init_a():
    EVENTS.append(("init", "a"))

def init_b(data):
    EVENTS.append(("init", "b", data))

collectd.register_config(configure)
collectd.register_config(configure, "DATA", name="other")
collectd.register_init(init_a, name="a")
collectd.register_init(init_b, None, name="b")
'''


def test_statements_run_in_order_then_init(make_host, tmp_path, caplog) -> None:
    write_plugin(tmp_path, "order_plugin", PLUGIN_ORDER)
    host = make_host()
    before = list(sys.path)
    host.start(statements(f'''<Plugin python>
  ModulePath "{tmp_path}"
  LogTraces true
  Interactive false
  Encoding "UTF8"
  Import "order_plugin"
  <Module ORDER_PLUGIN>
    Key "v"
  </Module>
  <Module other>
    X 1
  </Module>
  <Module missing>
    Y 2
  </Module>
</Plugin>'''))
    plugin = sys.modules["order_plugin"]
    assert sys.modules["collectd"] is host.module and sys.path[0] == str(tmp_path)
    assert plugin.EVENTS == [
        ("config", "Module", ("ORDER_PLUGIN",), ["Key"], ()),
        ("config", "Module", ("other",), ["X"], ("DATA",)),
        ("init", "b", None),  # most recently registered first, as in collectd
        ("init", "a"),
    ]
    assert host.log_traces and host.encoding == "utf-8"
    assert "'missing' plugin, but the plugin isn't loaded" in caplog.text
    host.shutdown()
    assert "order_plugin" not in sys.modules and "collectd" not in sys.modules
    assert sys.path == before


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('Import "no_such_module_xyz"',
         "py.conf:3: cannot import plugin module 'no_such_module_xyz': ModuleNotFoundError"),
        ('Import "broken_plugin"\n  <Module broken_plugin>\n    K 1\n  </Module>',
         "py.conf:4: configuration of python.broken_plugin failed: ValueError: bad key"),
        ('Import "exiting_plugin"', "py.conf:3: cannot import plugin module 'exiting_plugin': "
                                    "SystemExit: 3"),
        ("Nonsense 1", "py.conf:3: unknown option 'Nonsense' in <Plugin python>"),
        ('Encoding "nope"', "py.conf:3: unknown Encoding 'nope'"),
        ("LogTraces maybe", "py.conf:3: LogTraces needs exactly one boolean argument"),
        ("Import 1", "py.conf:3: Import needs exactly one string argument"),
    ],
)
def test_bad_configuration_is_a_config_error_and_is_undone(make_host, tmp_path, block: str,
                                                            message: str) -> None:
    write_plugin(tmp_path, "broken_plugin", "import collectd\n"
                 "def configure(c):\n    raise ValueError('bad key')\n"
                 "collectd.register_config(configure)\n")
    write_plugin(tmp_path, "exiting_plugin", "import sys\nsys.exit(3)\n")
    host = make_host()
    with pytest.raises(ConfigError) as caught:
        host.start(statements(f'<Plugin python>\n  ModulePath "{tmp_path}"\n  {block}\n'
                              "</Plugin>\n"))
    assert str(caught.value).startswith(message)
    assert "collectd" not in sys.modules and str(tmp_path) not in sys.path


def test_setup_from_file_reads_global_options(tmp_path) -> None:
    conf = tmp_path / "collectd.conf"
    conf.write_text('Hostname "h1"\nInterval 20\nTypesDB "a.db" "/b.db"\n'
                    "<LoadPlugin python>\n  Globals true\n  Interval 5\n</LoadPlugin>\n"
                    '<Plugin "python">\n  Import "x"\n</Plugin>\n<Plugin cpu>\n  A 1\n</Plugin>\n'
                    "<Plugin python>\n  Import \"y\"\n</Plugin>\n")
    setup = PythonSetup.from_file(str(conf))
    assert [n.values for n in setup.statements] == [("x",), ("y",)]
    assert (setup.hostname, setup.interval, setup.types_db) == ("h1", 5.0, ("a.db", "/b.db"))
    assert setup.resolve_hostname() == "h1"
    assert PythonSetup.from_tree(parse_text("FQDNLookup false\n<Plugin python>\n  "
                                            'Import "x"\n</Plugin>\n')).resolve_hostname()
    with pytest.raises(ConfigError, match="no <Plugin python> block"):
        PythonSetup.from_tree(parse_text("LoadPlugin python\n"), "c.conf")


def test_reads_follow_their_interval_and_back_off_after_failures(make_host) -> None:
    host = make_host()
    host.start(())
    collectd = host.module
    outcomes = iter([False, False, True, True, True, True])
    calls: list[float] = []
    clock = {"now": 0.0}

    def flaky() -> None:
        calls.append(clock["now"])
        if not next(outcomes):
            raise collectd.CollectdError("not yet")

    collectd.register_read(flaky, 10.0)

    def step(now: float) -> None:
        clock["now"] = now
        host.run_reads(now)
        poll(idle(host))

    for now in (0.0, 1.0, 19.9, 20.0, 59.9, 60.0, 69.9, 70.0, 79.0, 80.0, 80.5):
        step(now)
    # fails at 0 -> suspended 20 s; fails at 20 -> 40 s; succeeds at 60 -> back to 10 s
    assert calls == [0.0, 20.0, 60.0, 70.0, 80.0]
    task = host._reads[f"python.{__name__}"]
    assert (task.effective_interval, task.next_due) == (10.0, 90.0)
    step(200.0)  # late: missed calls are skipped, the next one is due a full interval later
    step(200.5)
    assert calls[-1] == 200.0 and task.next_due == 210.0

    always_failing = {"n": 0}

    def broken() -> None:
        always_failing["n"] += 1
        raise RuntimeError("broken")

    collectd.register_read(broken, 50_000.0, name="broken")
    step(100.0)
    step(100.1)
    assert host._reads["python.broken"].effective_interval == MAX_READ_INTERVAL
    assert host.counters["read.failures"] == 3 and host.counters["errors.callback"] == 3


def test_a_hung_read_blocks_only_itself(make_host, capsys) -> None:
    host = make_host(shutdown_timeout=0.5)
    host.start(())
    collectd = host.module
    release = threading.Event()
    started = threading.Event()
    counts = {"hung": 0, "ok": 0, "exit": 0}

    def hung() -> None:
        counts["hung"] += 1
        started.set()
        release.wait(30)

    def fine() -> None:
        counts["ok"] += 1
        print("a plugin printing")
        collectd.Values(type="gauge", values=[counts["ok"]]).dispatch()

    def exits() -> None:
        counts["exit"] += 1
        sys.exit(1)

    collectd.register_read(hung, 1.0, name="hung")
    collectd.register_read(fine, 1.0, name="fine")
    collectd.register_read(exits, 1.0, name="exits")
    host.run_reads(0.0)
    assert started.wait(5)
    for now in (1.0, 2.0, 3.0, 4.0):
        poll(lambda: not host._reads["python.fine"].running
             and not host._reads["python.exits"].running)
        host.run_reads(now)
    poll(lambda: counts["ok"] == 5)
    assert counts["hung"] == 1 and counts["exit"] == 2  # backing off: 0, 2, then 6
    values, _ = host.collect()
    assert [v.values for v in values][:2] == [((GAUGE, 1.0),), ((GAUGE, 2.0),)]
    assert "a plugin printing" in capsys.readouterr().out
    release.set()


def test_dispatch_defaults_and_fan_out_to_callbacks(make_host) -> None:
    host = make_host(default_interval=30.0)
    host.start(())
    collectd = host.module
    written: list[tuple] = []
    notified: list[tuple] = []
    collectd.register_write(lambda vl: written.append((vl.plugin, vl.host, vl.time,
                                                       vl.interval, vl.values, vl.meta)))
    collectd.register_write(lambda vl, data: written.append(("data", data)), "D", name="w2")
    collectd.register_notification(lambda n: notified.append((n.host, n.severity, n.message,
                                                              n.meta)))

    def read() -> None:
        collectd.Values(type="gauge", values=[1], meta={"k": 1}).dispatch()

    collectd.register_read(read, 7.0)
    host.run_reads(0.0)
    poll(idle(host))
    collectd.Values(plugin="outside", type="gauge", host="h2", time=5).dispatch(values=[2])
    collectd.Notification(type="gauge", message="hello", severity=2).dispatch()
    values, notes = host.collect()
    assert values == [
        ValueList("testhost", "python", "", "gauge", "", WALL_TIME, 7.0, ((GAUGE, 1.0),)),
        ValueList("h2", "outside", "", "gauge", "", 5.0, 30.0, ((GAUGE, 2.0),)),
    ]
    assert notes == [NotificationRecord("testhost", "python", "", "gauge", "", WALL_TIME, 2,
                                        "hello")]
    network = ValueList("net", "cpu", "0", "gauge", "idle", 9.0, 10.0, ((GAUGE, 3),))
    host.deliver([network, NotificationRecord("net", "p", "", "gauge", "", 9.0, 1, "bad"),
                  "junk"])
    poll(lambda: len(written) == 6 and len(notified) == 2)
    mine = sorted(w for w in written if w[0] != "data")
    assert mine == [("cpu", "net", 9.0, 10.0, [3.0], {}),
                    ("outside", "h2", 5.0, 30.0, [2.0], {}),
                    ("python", "testhost", WALL_TIME, 7.0, [1.0], {"k": 1})]
    assert written.count(("data", "D")) == 3
    assert notified == [("testhost", 2, "hello", {}), ("net", 1, "bad", {})]
    assert host.counters["deliver.ignored"] == 1


def test_values_write_to_one_destination(make_host) -> None:
    host = make_host()
    host.start(())
    collectd = host.module
    got: dict[str, list] = {"a": [], "b": []}
    collectd.register_write(lambda vl: got["a"].append(vl.values), name="a")
    collectd.register_write(lambda vl: got["b"].append(vl.values), name="b")
    collectd.Values(type="gauge", values=[1]).write("python.b")
    with pytest.raises(RuntimeError, match="error dispatching values"):
        collectd.Values(type="gauge", values=[1]).write("python.nope")
    poll(lambda: got["b"])
    assert got == {"a": [], "b": [[1.0]]} and host.collect() == ([], [])


def test_log_callbacks_get_plugin_and_host_messages(make_host, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="bucky")
    host = make_host()
    host.start(())
    collectd = host.module
    received: list[tuple[int, str]] = []

    def on_log(severity: int, message: str) -> None:
        received.append((severity, message))
        collectd.info("logged inside a log callback")  # not passed back: no loop

    collectd.register_log(on_log)
    collectd.notice("hello from a plugin")
    host.log_traces = True

    def failing() -> None:
        raise KeyError("boom")

    collectd.register_read(failing, name="failing")
    host.run_reads(0.0)
    poll(idle(host))
    poll(lambda: any("Traceback" in m for _, m in received))
    assert received[0] == (collectd.LOG_NOTICE, "hello from a plugin")
    assert (collectd.LOG_ERROR, "Unhandled python exception in read callback python.failing: "
            "KeyError: 'boom'") in received
    assert not any("inside a log callback" in m for _, m in received)
    record = next(r for r in caplog.records if r.getMessage() == "hello from a plugin")
    assert record.name == f"bucky.plugins.{__name__}" and record.levelno == logging.INFO


def test_flush_and_shutdown(make_host) -> None:
    host = make_host(shutdown_timeout=0.3)
    host.start(())
    collectd = host.module
    events: list[tuple] = []
    collectd.register_flush(lambda timeout, ident: events.append(("flush", timeout, ident)))
    collectd.register_flush(lambda timeout, ident, data: events.append(("f2", data)), "D",
                            name="f2")
    collectd.flush()
    collectd.flush("python.f2", 3, "id")
    poll(lambda: len(events) == 3)
    assert sorted(events, key=str) == [("f2", "D"), ("f2", "D"), ("flush", -1, None)]
    events.clear()
    hang = threading.Event()
    collectd.register_shutdown(lambda: events.append(("shutdown", "first")), name="s1")
    collectd.register_shutdown(lambda: hang.wait(30), name="hangs")
    collectd.register_shutdown(lambda: collectd.Values(type="gauge").dispatch(values=[9]),
                               name="s3")
    host.shutdown()
    hang.set()
    assert sorted(events, key=str) == [("f2", "D"), ("flush", 0, None), ("shutdown", "first")]
    values, _ = host.collect()  # what shutdown callbacks dispatched is still collected
    assert [v.values for v in values] == [((GAUGE, 9.0),)]
    assert "collectd" not in sys.modules


def test_duplicate_names_and_unregister(make_host, caplog) -> None:
    host = make_host()
    host.start(())
    collectd = host.module
    calls: list[str] = []
    collectd.register_read(lambda: calls.append("first"), name="r")
    collectd.register_read(lambda: calls.append("second"), name="r")
    got: list[str] = []
    collectd.register_write(lambda vl: got.append("old"), name="w")
    collectd.register_write(lambda vl: got.append("new"), name="w")
    assert "already registered: ignored" in caplog.text and "already exists: replaced" in \
        caplog.text
    host.run_reads(0.0)
    poll(idle(host))
    host.deliver([ValueList("h", "p", "", "gauge", "", 1.0, 10.0, ((GAUGE, 1.0),))])
    poll(lambda: got)
    assert calls == ["first"] and got == ["new"]
    collectd.unregister_read("python.r")
    host.run_reads(100.0)
    assert calls == ["first"] and "python.r" not in host._reads


def test_a_slow_write_callback_loses_only_its_own_jobs(make_host) -> None:
    host = make_host(queue_capacity=2)
    host.start(())
    collectd = host.module
    release = threading.Event()
    slow: list[float] = []
    fast: list[float] = []
    collectd.register_write(lambda vl: (release.wait(30), slow.append(vl.values[0])),
                            name="slow")
    collectd.register_write(lambda vl: fast.append(vl.values[0]), name="fast")
    records = [ValueList("h", "p", "", "gauge", "", 1.0, 10.0, ((GAUGE, float(i)),))
               for i in range(6)]
    host.deliver(records[:1])
    poll(lambda: host._queued["write"]["python.slow"][1]._pending == 1 and
         not host._queued["write"]["python.slow"][1]._jobs)
    for count, record in enumerate(records[1:], start=2):
        host.deliver([record])
        poll(lambda n=count: len(fast) == n)
    release.set()
    poll(lambda: len(slow) == 3)
    assert slow == [0.0, 1.0, 2.0] and host.counters["dropped.write_queue_full"] == 3


def test_callback_errors_are_counted_and_logged_once_a_minute(make_host, caplog) -> None:
    host = make_host()
    host.start(())
    collectd = host.module

    def failing_write(vl: Any) -> None:
        raise ValueError(f"cannot write {vl.values[0]}")

    collectd.register_write(failing_write, name="w")
    host.deliver([ValueList("h", "p", "", "gauge", "", 1.0, 10.0, ((GAUGE, float(i)),))
                  for i in range(3)])
    poll(lambda: host.counters["errors.callback"] == 3)
    reports = [r.getMessage() for r in caplog.records if "write callback python.w" in
               r.getMessage()]
    assert reports == ["Unhandled python exception in write callback python.w: ValueError: "
                       "cannot write 0.0"]
