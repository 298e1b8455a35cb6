"""A capture written by the real tcpdump (`tcpdump -w` on lo, bounded by -c and a timeout) is
read by `bucky-dump --pkts` and `bucky --explain --pkts`: IPv4 and IPv6 datagrams, chosen by
destination port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from buckyproc import free_port
from peers import executable, missing

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def capture_on_lo(path: Path, port: int, datagrams: list[tuple[str, bytes]]) -> None:
    """Send `datagrams` ((address, payload)) to `port` while tcpdump writes them to `path`."""
    tcpdump = executable("tcpdump", "tcpdump", "/usr/bin/tcpdump", "/usr/sbin/tcpdump")
    process = subprocess.Popen(
        [tcpdump, "-i", "lo", "-n", "-U", "-c", str(len(datagrams)), "-w", str(path),
         "udp", "and", "dst", "port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # "listening on lo, ...": the filter is in place
        if "listening on" not in line:
            process.wait(TIMEOUT)
            missing(f"tcpdump cannot capture on lo here: {line.strip()}")
        for address, payload in datagrams:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sender:
                sender.sendto(payload, (address, port))
        process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0


def test_a_tcpdump_capture_is_read_by_bucky_dump_and_explained(tmp_path: Path) -> None:
    port = free_port()
    capture = tmp_path / "lo.pcap"
    capture_on_lo(capture, port, [("127.0.0.1", b"app.hits:1|c"), ("::1", b"app.load:0.5|g"),
                                  ("127.0.0.1", b"app.hits:2|c")])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    dump = subprocess.run([sys.executable, "-m", "bucky.dump", "--statsd", "--port", str(port),
                           "--pkts", str(capture)], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.splitlines() == ["counter app.hits 1.0", "gauge app.load 0.5",
                                        "counter app.hits 2.0"]
    config = tmp_path / "config.py"
    config.write_text(f"statsd_port = {port}\n")
    explain = subprocess.run([sys.executable, "-m", "bucky", "--explain", "--pkts", str(capture),
                              str(config)], capture_output=True, text=True, env=env,
                             timeout=TIMEOUT)
    assert explain.returncode == 0, explain.stderr
    assert f"# 3 datagrams to statsd port {port}" in explain.stdout
    assert "graphite: stats_counts.app.hits 3.0 " in explain.stdout
    assert "graphite: stats.gauges.app.load 0.5 " in explain.stdout
