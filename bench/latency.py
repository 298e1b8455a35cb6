"""Benchmark: latency from datagram to carbon at low load, through the whole daemon.

Sends collectd GAUGE values at a fixed, low rate (default 5,000 values/s in datagrams of 10) to a
`bucky` subprocess whose plaintext Graphite output goes to a local sink. Each value *is* the
wall-clock time at which its datagram was sent, so the sink computes each value's latency from
the line alone: arrival time minus value. Reports p50/p90/p99/max and the values delivered.

    python bench/latency.py [--rate 5000] [--seconds 10] [--per-datagram 10] [--processor]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.udp_load import free_udp_port  # noqa: E402


class LatencySink:
    """Plaintext carbon on 127.0.0.1: latency of each `lat.*` line = arrival - its value."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.latencies: list[float] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        rest = b""
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            now = time.time()
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            for line in data[:cut].split(b"\n"):
                if b".lat." in line:
                    self.latencies.append(now - float(line.split()[1]))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    from bucky.protocol.collectd import encode
    from bucky.protocol.collectd_records import GAUGE, ValueList

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=5000, help="values per second")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--per-datagram", type=int, default=10)
    ap.add_argument("--processor", action="store_true", help="run with a (no-op) processor")
    args = ap.parse_args()

    sink = LatencySink()
    port = free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-latency-")
    cfg = os.path.join(tmp, "config.py")
    with open(cfg, "w") as fh:
        fh.write(f"graphite_port = {sink.port}\ndirectory = {tmp!r}\nself_metrics_interval = 0\n"
                 f"statsd_enabled = False\nmetricsd_enabled = False\ncollectd_port = {port}\n"
                 "http_enabled = False\n"
                 + ("processor = lambda host, name, value, ts: (host, name, value, ts)\n"
                    if args.processor else ""))
    proc = subprocess.Popen([sys.executable, "-m", "bucky", cfg], stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line or "bucky started" in line:
            break
    time.sleep(1.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per = args.per_datagram
    datagrams = int(args.rate * args.seconds / per)
    interval = per / args.rate
    start = time.monotonic()
    for i in range(datagrams):
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent_at = time.time()
        values = [ValueList("bench", "lat", "", "gauge", str((i * per + k) % 1000), sent_at, 10.0,
                            ((GAUGE, sent_at),)) for k in range(per)]
        for gram in encode(values):
            sender.sendto(gram, ("127.0.0.1", port))
    time.sleep(2.0)
    proc.terminate()
    proc.wait(30)
    lat = sink.latencies
    expected = datagrams * per
    if not lat:
        print("no value arrived")
        return
    ms = [x * 1000 for x in lat]
    print(f"latency at {args.rate:.0f} values/s ({per}/datagram, "
          f"{'with' if args.processor else 'no'} processor): p50 {percentile(ms, 50):.2f} ms, "
          f"p90 {percentile(ms, 90):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
          f"max {max(ms):.2f} ms; {len(lat)}/{expected} values delivered")


if __name__ == "__main__":
    main()
