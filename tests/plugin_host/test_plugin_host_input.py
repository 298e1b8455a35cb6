"""PluginHostInput end to end: collectd-python(5)'s examples, a third-party plugin from PyPI,
the collectd pipeline (rates, names) for dispatched values, callbacks for decoded records.

Reads run in worker threads; the tests drive tick() with the wall clock and poll with deadlines.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from peers import missing

from bucky.config import make_config
from bucky.errors import ConfigError
from bucky.inputs.collectd import CollectdPipeline
from bucky.inputs.python_plugins import PluginHostInput
from bucky.protocol.collectd_records import DERIVE, GAUGE, Notification, ValueList
from bucky.protocol.typesdb import load_types_db

DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "data", "plugin_host"))
TYPES_DB = os.path.join(DATA, "types.db")
THIRD_PARTY = "collectd-connect-time==0.3.0"


class FakeSink:
    def __init__(self) -> None:
        self.samples: list[tuple] = []
        self.notifications: list[Notification] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def notify(self, record: Notification) -> None:
        self.notifications.append(record)


@pytest.fixture()
def start() -> Iterator[Callable[..., tuple[PluginHostInput, FakeSink]]]:
    inputs: list[PluginHostInput] = []

    def make(conf_path: str, **options: Any) -> tuple[PluginHostInput, FakeSink]:
        cfg = make_config(collectd_python_config=conf_path, collectd_types=(TYPES_DB,),
                          collectd_use_entry_points=False, **options)
        sink = FakeSink()
        inputs.append(PluginHostInput(cfg, sink))
        return inputs[-1], sink

    yield make
    for handler in inputs:
        handler.close(time.time())


def ticks_until(handler: PluginHostInput, done: Callable[[], object],
                timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout} s; counters {handler.counters}")
        handler.tick(time.time())
        time.sleep(0.005)


def pipeline_samples(value_lists: list[ValueList], now: float) -> list[tuple]:
    """What the network path makes of the same value lists."""
    cfg = make_config(collectd_types=(TYPES_DB,), collectd_use_entry_points=False)
    return CollectdPipeline(cfg, datasets=load_types_db([TYPES_DB])).process(value_lists, now)


def write_conf(tmp_path: Any, body: str, head: str = 'Hostname "testhost"\n') -> str:
    path = tmp_path / "collectd.conf"
    path.write_text(f"{head}<Plugin python>\n{body}\n</Plugin>\n")
    return str(path)


def test_the_collectd_python_man_page_examples_run(start, tmp_path, capsys, caplog) -> None:
    conf = write_conf(tmp_path, f'''  ModulePath "{DATA}"
  LogTraces true
  Interactive false
  Import "spam"
  <Module spam>
    spam "wonderful" "lovely"
  </Module>''')
    handler, sink = start(conf)
    assert "'spam' plugin, but the plugin isn't loaded" in caplog.text  # no config callback
    ticks_until(handler, lambda: sink.samples)
    ((host, name, value, timestamp),) = sink.samples
    expected = pipeline_samples(
        [ValueList("testhost", "python.spam", "", "gauge", "", timestamp, 10.0,
                   ((GAUGE, value),))], time.time())
    assert [(host, name, value, timestamp)] == expected
    ticks_until(handler, lambda: "python.spam (gauge)" in capsys.readouterr().out)

    handler.deliver([ValueList("net", "cpu", "0", "gauge", "idle", 5.0, 10.0,
                               ((GAUGE, 42.0),))], time.time())
    ticks_until(handler, lambda: "cpu (gauge): 42.000000" in capsys.readouterr().out)
    assert handler.counters["read.calls"] >= 1 and not handler.counters["errors.callback"]


PLUGIN = '''
import collectd

def configure(config):
    for node in config.children:
        collectd.info("option %s = %r" % (node.key, node.values))

def read():
    for when, value in ((100.0, 0), (110.0, 50)):
        collectd.Values(plugin="counting", type="derive").dispatch(values=[value], time=when)
    collectd.Values(plugin="custom", type="lamps").dispatch(values=[3])
    collectd.Notification(type="gauge", message="read done", severity=4).dispatch()
    collectd.unregister_read(read)

def write(vl, data):
    data.append(vl)

def shutdown():
    collectd.Values(plugin="bye", type="gauge").dispatch(values=[1])

WRITTEN = []
collectd.register_config(configure)
collectd.register_read(read)
collectd.register_write(write, WRITTEN)
collectd.register_shutdown(shutdown)
'''


def test_dispatched_values_take_the_network_path(start, tmp_path, caplog) -> None:
    (tmp_path / "counting_plugin.py").write_text(PLUGIN)
    (tmp_path / "extra.db").write_text("lamps  value:GAUGE:0:U\n")
    conf = write_conf(tmp_path, f'''  ModulePath "{tmp_path}"
  Import "counting_plugin"
  <Module counting_plugin>
    Mode "fast" 2
  </Module>''', head='Hostname "testhost"\nTypesDB "extra.db"\nInterval 30\n')
    caplog.set_level("INFO", logger="bucky")
    handler, sink = start(conf)
    assert "option Mode = ('fast', 2.0)" in caplog.text
    ticks_until(handler, lambda: sink.notifications)
    expected = pipeline_samples([
        ValueList("testhost", "counting", "", "derive", "", 100.0, 30.0, ((DERIVE, 0),)),
        ValueList("testhost", "counting", "", "derive", "", 110.0, 30.0, ((DERIVE, 50),)),
    ], time.time())
    assert len(expected) == 1 and expected[0][2] == 5.0  # a rate, as from the network
    assert expected[0] in sink.samples
    assert any(s[1].endswith("lamps") and s[2] == 3.0 for s in sink.samples)
    (note,) = sink.notifications
    assert (note.host, note.plugin, note.severity, note.message) == ("testhost", "python", 4,
                                                                     "read done")
    plugin = __import__("counting_plugin")
    ticks_until(handler, lambda: len(plugin.WRITTEN) == 3)
    handler.close(time.time())
    assert any(s[1].startswith("bye") for s in sink.samples)
    assert handler.counters["values.dispatched"] == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<Plugin python>\n  Import \"x\"\n", r"collectd.conf:1: block <Plugin> is not closed"),
        ("LoadPlugin python\n", r"collectd.conf: no <Plugin python> block"),
        ('<Plugin python>\n  Import "no_such_plugin_abc"\n</Plugin>\n',
         r"collectd.conf:2: cannot import plugin module 'no_such_plugin_abc'"),
        ('TypesDB "missing.db"\n<Plugin python>\n</Plugin>\n', r"missing.db"),
    ],
)
def test_bad_setups_are_config_errors(start, tmp_path, text: str, message: str) -> None:
    (tmp_path / "collectd.conf").write_text(text)
    with pytest.raises(ConfigError, match=message):
        start(str(tmp_path / "collectd.conf"))


def test_no_config_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="collectd_python_config"):
        PluginHostInput(make_config(), FakeSink())


@pytest.fixture()
def listener() -> Iterator[int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


def test_an_unmodified_third_party_plugin_from_pypi(start, tmp_path, listener, caplog) -> None:
    """collectd-connect-time (PyPI, pure Python): times TCP connects to its targets; here a
    listening socket on this machine."""
    if importlib.util.find_spec("collectd_connect_time") is None:
        missing(f"the third-party plugin is not installed: pip install {THIRD_PARTY}")
    target = f"127.0.0.1:{listener}"
    conf = write_conf(tmp_path, f'''  Import "collectd_connect_time"
  <Module collectd_connect_time>
    Target "{target}"
    Interval 1
  </Module>''')
    caplog.set_level("INFO", logger="bucky")
    handler, sink = start(conf)
    assert "isn't loaded" not in caplog.text
    assert re.search(r"Configured with \('127\.0\.0\.1:\d+',\)", caplog.text)
    ticks_until(handler, lambda: len(sink.samples) >= 4)
    dispatched = [ValueList("testhost", "connect-time", target, "response_time", which, 0.0, 1.0,
                            ((GAUGE, 1.0),)) for which in ("resolve", "max", "min", "avg")]
    names = {s[1] for s in pipeline_samples(dispatched, time.time())}
    got = sink.samples[:4]
    assert {s[1] for s in got} == names
    assert all(s[0] == "testhost" and s[2] >= 0 for s in got)
    assert not handler.counters["errors.callback"]
