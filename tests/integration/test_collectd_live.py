"""Debian's real collectd sends to the running daemon (None, Sign, Encrypt); rates reach carbon.

collectd's exec plugin (run as `nobody`) prints PUTVAL lines of known values every second:
a GAUGE of 42.5, a DERIVE rising by 100/s and a COUNTER rising by 10/s. The network plugin sends
them to Bucky with `FlushInterval 1`; Bucky turns them into rates and a fake carbon receives them.
With a wrong password nothing arrives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon
from peers import missing

from bucky.daemon.selfmetrics import expand_prefix

SELF = expand_prefix("bucky.{host}") + "."  # self-metrics of this host

pytestmark = pytest.mark.integration

COLLECTD = Path("/usr/sbin/collectd")
PLUGIN_DIR = Path("/usr/lib/collectd")
TYPES_DB = Path("/usr/share/collectd/types.db")
_missing = [str(p) for p in (COLLECTD, PLUGIN_DIR / "network.so", PLUGIN_DIR / "exec.so", TYPES_DB)
            if not p.exists()]
if _missing:
    missing("Debian's collectd (collectd-core) is not installed: missing " + ", ".join(_missing))
if os.geteuid() != 0:
    missing("collectd's exec plugin must switch to user nobody: run as root")

EXEC_SCRIPT = """#!/bin/sh
i=0
while [ $i -lt 60 ]; do
  t=$(date +%s)
  echo "PUTVAL \\"live-host/livetest/gauge-g\\" interval=1 $t:42.5"
  echo "PUTVAL \\"live-host/livetest/derive-d\\" interval=1 $t:$((i * 100))"
  echo "PUTVAL \\"live-host/livetest/counter-c\\" interval=1 $t:$((i * 10))"
  i=$((i + 1))
  sleep 1
done
"""


def collectd_conf(root: Path, port: int, security: str, password: str) -> str:
    auth = "" if security == "None" else f'Username "alice"\n    Password "{password}"'
    return f"""Hostname "collectd-live"
FQDNLookup false
BaseDir "{root}"
PIDFile "{root}/collectd.pid"
PluginDir "{PLUGIN_DIR}"
TypesDB "{TYPES_DB}"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{root}/collectd.log"
</Plugin>
LoadPlugin exec
<Plugin exec>
  Exec "nobody" "{root}/exec.sh"
</Plugin>
<LoadPlugin network>
  FlushInterval 1
</LoadPlugin>
<Plugin network>
  <Server "127.0.0.1" "{port}">
    SecurityLevel {security}
    {auth}
  </Server>
</Plugin>
"""


def run_case(tmp_path: Path, security: str, level: int, password: str = "s3cret",
             self_metrics: float = 0):
    root = Path(tempfile.mkdtemp(prefix="bucky-collectd-"))
    os.chmod(root, 0o755)
    script = root / "exec.sh"
    script.write_text(EXEC_SCRIPT)
    script.chmod(0o755)
    auth = tmp_path / "auth"
    auth.write_text("alice: s3cret\n")
    carbon = FakeCarbon().start()
    options = {"graphite_port": carbon.port, "statsd_enabled": False, "metricsd_enabled": False,
               "collectd_security_level": level, "self_metrics_interval": self_metrics}
    if level:
        options["collectd_auth_file"] = str(auth)
    bucky = Bucky(tmp_path, options).start()
    (root / "collectd.conf").write_text(
        collectd_conf(root, bucky.ports["collectd_port"], security, password))
    collectd = subprocess.Popen([str(COLLECTD), "-f", "-C", str(root / "collectd.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return root, carbon, bucky, collectd


def finish(root, carbon, bucky, collectd):
    collectd.terminate()
    try:
        collectd.wait(10)
    except subprocess.TimeoutExpired:
        collectd.kill()
    code = bucky.stop()
    carbon.stop()
    shutil.rmtree(root, ignore_errors=True)
    return code


@pytest.mark.parametrize("security,level", [("None", 0), ("Sign", 1), ("Encrypt", 2)])
def test_collectd_values_and_rates_arrive(tmp_path, security, level):
    root, carbon, bucky, collectd = run_case(tmp_path, security, level)
    try:
        def have_rates(points):
            got = {p for p, v, _ in points}
            return {"live-host.livetest.gauge.g", "live-host.livetest.derive.d",
                    "live-host.livetest.counter.c"} <= got

        assert carbon.wait_for(have_rates, 30), (root / "collectd.log").read_text()
        values = {}
        for path, value, _ in carbon.points:
            values.setdefault(path, []).append(value)
        assert set(values["live-host.livetest.gauge.g"]) == {42.5}
        assert values["live-host.livetest.derive.d"][-1] == pytest.approx(100.0)
        assert values["live-host.livetest.counter.c"][-1] == pytest.approx(10.0)
    finally:
        assert finish(root, carbon, bucky, collectd) == 0


@pytest.mark.parametrize("security,level", [("Sign", 1), ("Encrypt", 2)])
def test_wrong_password_delivers_nothing(tmp_path, security, level):
    root, carbon, bucky, collectd = run_case(tmp_path, security, level, password="wrong",
                                             self_metrics=0.5)
    reason = "bad_signature" if level == 1 else "bad_checksum"
    try:
        # collectd did send: Bucky counts the rejected datagrams by reason...
        assert carbon.wait_for(lambda pts: any(
            p.startswith(SELF + "collectd.bad_datagrams.") and reason.replace("_", "-") in p
            and v > 0 for p, v, _ in pts), 30), carbon.paths()
        time.sleep(1.5)
        # ...and not one value got through.
        assert not any(p.startswith("live-host.") for p in carbon.paths())
    finally:
        assert finish(root, carbon, bucky, collectd) == 0
