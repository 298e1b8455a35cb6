"""runit: runsv supervises contrib/runit/run; `sv term` stops bucky cleanly, runsv restarts it."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buckyproc import ROOT, free_port
from peers import missing

if shutil.which("runsv") is None or shutil.which("sv") is None:
    missing("runit (runsv, sv) is not installed: apt-get install runit")


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_runsv_supervises_bucky_and_sv_term_restarts_it():
    base = Path(tempfile.mkdtemp(prefix="bucky-runit-"))
    svc = base / "svc" / "bucky"
    (svc / "log").mkdir(parents=True)
    shutil.copy(ROOT / "contrib/runit/run", svc / "run")
    shutil.copy(ROOT / "contrib/runit/log/run", svc / "log" / "run")
    port = free_port()
    config = base / "config.py"
    config.write_text(
        f"debug = True\nstatsd_port = {port}\nstatsd_flush_time = 0.5\n"
        f"collectd_enabled = False\nmetricsd_enabled = False\n"
        f"directory = {str(base / 'state')!r}\nself_metrics_interval = 0\n"
        f"http_port = {free_port(socket.SOCK_STREAM)}\n")
    bucky_cmd = shutil.which("bucky") or f"{sys.executable} -m bucky"
    env = dict(os.environ, BUCKY=bucky_cmd, BUCKY_CONFIG=str(config), BUCKY_USER="root",
               BUCKY_GROUP="root", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    runsv = subprocess.Popen(["runsv", str(svc)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    log = svc / "log" / "main" / "current"
    read_log = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    try:
        wait_for(lambda: "bucky started" in read_log(), 30, "bucky to start under runsv")
        pid1 = int((svc / "supervise" / "pid").read_text())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"runit.probe:7|c", ("127.0.0.1", port))
        wait_for(lambda: "stats_counts.runit.probe 7" in read_log(), 20, "the probe in the log")
        subprocess.run(["sv", "term", str(svc)], check=True, timeout=10)
        wait_for(lambda: "received SIGTERM: stopping" in read_log(), 20, "the SIGTERM log line")

        def new_pid():
            try:
                pid = int((svc / "supervise" / "pid").read_text())
            except (OSError, ValueError):
                return None
            return pid if pid != pid1 else None

        pid2 = wait_for(new_pid, 20, "runsv to restart bucky")
        assert pid2 != pid1
        wait_for(lambda: read_log().count("bucky started") >= 2, 30, "the restarted bucky")
        status = subprocess.run(["sv", "status", str(svc)], capture_output=True, text=True,
                                timeout=10).stdout
        assert status.startswith("run:")
        assert "Traceback" not in read_log()
    finally:
        subprocess.run(["sv", "-w", "15", "exit", str(svc)], capture_output=True, timeout=30)
        try:
            runsv.wait(20)
        except subprocess.TimeoutExpired:
            runsv.kill()
        shutil.rmtree(base, ignore_errors=True)
