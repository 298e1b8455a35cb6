"""The daemon runs collectd Python plugins: read callbacks dispatch values, write callbacks see
what collectd sends over the network."""

import time

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon

from bucky.protocol.collectd import encode
from bucky.protocol.collectd_records import GAUGE, ValueList

pytestmark = pytest.mark.integration

PLUGIN = '''
import collectd

OUT = None


def config(conf):
    global OUT
    for node in conf.children:
        if node.key == "Out":
            OUT = node.values[0]


def read():
    collectd.Values(plugin="pyread", type="gauge", type_instance="answer").dispatch(values=[42])


def write(vl, data=None):
    with open(OUT, "a") as fh:
        fh.write("%s %s %s %s %r\\n" % (vl.host, vl.plugin, vl.type, vl.type_instance, vl.values))


collectd.register_config(config)
collectd.register_read(read, 0.5)
collectd.register_write(write)
'''


def test_plugins_read_and_write_through_the_daemon(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "myplugin.py").write_text(PLUGIN)
    out = tmp_path / "written.txt"
    conf = tmp_path / "python.conf"
    conf.write_text(f'''Hostname "plugin-host"
<Plugin python>
  ModulePath "{tmp_path / 'plugins'}"
  Import "myplugin"
  <Module myplugin>
    Out "{out}"
  </Module>
</Plugin>
''')
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_enabled": False,
                                 "metricsd_enabled": False,
                                 "collectd_python_config": str(conf)}).start()
        try:
            assert "bucky: python_plugins" in bucky.child_pids()
            assert carbon.wait_for(lambda pts: any(p == "plugin-host.pyread.gauge.answer"
                                                   and v == 42 for p, v, _ in pts), 15)
            vl = ValueList("net-host", "netplug", "", "gauge", "x", time.time(), 10.0,
                           ((GAUGE, 7.5),))
            for datagram in encode([vl]):
                bucky.send_udp("collectd_port", datagram)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if out.exists() and "net-host netplug gauge x [7.5]" in out.read_text():
                    break
                time.sleep(0.1)
            assert "net-host netplug gauge x [7.5]" in out.read_text()
            # the network value also reached carbon like any other
            assert carbon.wait_for(lambda pts: "net-host.netplug.gauge.x" in {p[0] for p in pts})
        finally:
            assert bucky.stop() == 0


def test_plugin_that_cannot_be_found_is_a_config_error(tmp_path):
    conf = tmp_path / "python.conf"
    conf.write_text('Hostname "h"\n<Plugin python>\n  Import "no_such_plugin_xyz"\n</Plugin>\n')
    bucky = Bucky(tmp_path, {"statsd_enabled": False, "metricsd_enabled": False,
                             "collectd_python_config": str(conf), "graphite_port": 9})
    bucky.start(wait_ready=False)
    code = bucky.proc.wait(60)
    assert code == 2  # found missing by the plan, before anything started
    assert any("collectd_python_config" in line and "no_such_plugin_xyz" in line
               for line in bucky.stderr_lines)


def test_plugin_whose_import_raises_halts_the_daemon(tmp_path):
    (tmp_path / "broken_plugin_xyz.py").write_text("raise RuntimeError('broken at import')\n")
    conf = tmp_path / "python.conf"
    conf.write_text(f'Hostname "h"\n<Plugin python>\n  ModulePath "{tmp_path}"\n'
                    '  Import "broken_plugin_xyz"\n</Plugin>\n')
    bucky = Bucky(tmp_path, {"statsd_enabled": False, "metricsd_enabled": False,
                             "collectd_python_config": str(conf), "graphite_port": 9})
    bucky.start(wait_ready=False)
    code = bucky.proc.wait(60)
    assert code == 1  # plugin code runs in the plugin process only: found when it starts
    assert any("python_plugins failed to start" in line and "broken at import" in line
               for line in bucky.stderr_lines)
