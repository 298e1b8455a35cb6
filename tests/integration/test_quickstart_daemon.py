"""The README's quick start works as written: its config file, `bucky-send` for a StatsD and a
collectd metric, the metrics in carbon, /health answering, and one quiet start (at most one
receive-buffer line, no advice to run as root given to root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from buckyproc import ROOT, Bucky, free_ports
from fakecarbon import FakeCarbon
from test_readme_quickstart import quickstart_config


def send(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "bucky.send", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_quick_start(tmp_path: Path) -> None:
    ports = free_ports()
    with FakeCarbon() as carbon:
        # The README's file, then only what a test must change: free ports, a quick flush.
        overrides = {**ports, "graphite_port": carbon.port, "statsd_flush_time": 1.0}
        extra = quickstart_config() + "".join(f"{k} = {v!r}\n" for k, v in overrides.items())
        bucky = Bucky(tmp_path, dict(ports), extra_config=extra).start()
        try:
            send("statsd", "app.hits:1|c", "--port", str(ports["statsd_port"]))
            send("collectd", "web1/app/gauge-queue 17", "--port", str(ports["collectd_port"]))
            assert carbon.wait_for(lambda points: any(
                p[0] == "stats_counts.app.hits" and p[1] == 1 for p in points)
                and any(p[0].startswith("web1.") and "queue" in p[0] for p in points),
                timeout=20), carbon.paths()
            status, body = bucky.http_get("/health")
            assert status == 200, body
        finally:
            assert bucky.stop() == 0
    buffer_lines = [line for line in bucky.stderr_lines if "receive buffer" in line]
    assert len(buffer_lines) <= 1, buffer_lines
    if os.geteuid() == 0:
        assert not any("as root" in line for line in bucky.stderr_lines), bucky.stderr_lines
