"""Benchmark: StatsD with statsd_workers 1 and 2 in the same run, and the forwarding proxy's rate.

Workers: for each N, the daemon (plaintext output to a counting sink) gets StatsD counter lines,
20 per datagram over 1,000 keys, at a fixed offered rate for a fixed time; delivered lines are
counted by content (the summed `stats_counts.bench.*` values), CPU seconds of Bucky's process
tree give the CPU per line.

Proxy: the daemon with `statsd_forward` to three local UDP sinks (in this process, counting the
lines they receive) gets the same load; reports lines forwarded per second and CPU per line.

    python bench/statsd_scale.py --rate 400000 --seconds 10
    python bench/statsd_scale.py --proxy-only --rate 400000
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

from bench.common import LineSink, cpu_seconds, descendants  # noqa: E402
from bench.udp_load import free_udp_port, send  # noqa: E402

PER = 20
KEYS = 1000


def datagrams() -> list[bytes]:
    grams, line = [], 0
    for _ in range(2000):
        grams.append("\n".join(f"bench.k{(line + j) % KEYS}:1|c" for j in range(PER)).encode())
        line += PER
    return grams


def start(config: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bucky", config], stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line or "bucky started" in line:
            break
    time.sleep(0.5)
    return proc


def udp_drops() -> int:
    """The kernel's count of datagrams dropped for a full receive buffer (all sockets)."""
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def run_workers(n: int, rate: float, seconds: float) -> dict[str, float]:
    sink = LineSink(keep_prefixes=("stats_counts.bench.",))
    port = free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-bench-")
    cfg = os.path.join(tmp, "config.py")
    with open(cfg, "w") as fh:
        fh.write(f"graphite_port = {sink.port}\ndirectory = {tmp!r}\nself_metrics_interval = 0\n"
                 f"collectd_enabled = False\nmetricsd_enabled = False\nstatsd_port = {port}\n"
                 f"statsd_flush_time = 1.0\nstatsd_workers = {n}\nprocess_join_timeout = 20\n")
    proc = start(cfg)
    cpu0 = cpu_seconds(descendants(proc.pid))
    drops0 = udp_drops()
    sent, took = send(port, datagrams(), PER, rate, seconds, sockets=8)
    drops = udp_drops() - drops0
    time.sleep(2.5)
    # StatsD writes its own statistics every flush: wait for the delivered count to settle
    sink.wait_stable(lambda: sum(float(line.split()[1]) for line in list(sink.kept)),
                     stable=2.5, timeout=120)
    cpu = cpu_seconds(descendants(proc.pid)) - cpu0
    proc.terminate()
    proc.wait(60)
    sink.wait_idle(idle=0.5, timeout=10)
    delivered = int(sum(float(line.split()[1]) for line in sink.kept))
    sink.close()
    return {"sent": sent, "took": took, "delivered": delivered, "cpu": cpu,
            "kernel_drops": drops * PER}


class UdpCounter:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines = 0
        self.last = time.monotonic()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        buf = bytearray(65536)
        while not self._stop:
            try:
                n = self.sock.recv_into(buf)
            except OSError:
                continue
            self.lines += buf.count(b"\n", 0, n) + 1
            self.last = time.monotonic()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def run_proxy(rate: float, seconds: float) -> dict[str, float]:
    nodes = [UdpCounter() for _ in range(3)]
    port = free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-bench-")
    cfg = os.path.join(tmp, "config.py")
    forward = [f"127.0.0.1:{n.port}" for n in nodes]
    with open(cfg, "w") as fh:
        fh.write(f"graphite_enabled = False\ndirectory = {tmp!r}\nself_metrics_interval = 0\n"
                 f"collectd_enabled = False\nmetricsd_enabled = False\nstatsd_port = {port}\n"
                 f"statsd_forward = {forward!r}\nprocess_join_timeout = 20\n")
    proc = start(cfg)
    cpu0 = cpu_seconds(descendants(proc.pid))
    sent, took = send(port, datagrams(), PER, rate, seconds, sockets=8)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - max(n.last for n in nodes) < 1.0:
        time.sleep(0.1)
    cpu = cpu_seconds(descendants(proc.pid)) - cpu0
    proc.terminate()
    proc.wait(60)
    delivered = sum(n.lines for n in nodes)
    for n in nodes:
        n.close()
    return {"sent": sent, "took": took, "delivered": delivered, "cpu": cpu}


def report(label: str, r: dict[str, float]) -> float:
    rate = r["delivered"] / r["took"]
    loss = 1 - r["delivered"] / r["sent"] if r["sent"] else 0.0
    per_line = r["cpu"] / r["delivered"] * 1e6 if r["delivered"] else float("nan")
    print(f"{label}: offered {r['sent'] / r['took']:,.0f} lines/s; delivered {rate:,.0f} lines/s;"
          f" loss {loss:.2%}; CPU {r['cpu']:.1f} s ({r['cpu'] / r['took']:.2f} cores), "
          f"{per_line:.2f} us/line"
          + (f"; dropped by the kernel (receive buffer full): {r['kernel_drops']:,} lines"
             if "kernel_drops" in r else ""))
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=400000, help="offered lines per second")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--proxy-only", action="store_true")
    args = ap.parse_args()
    if not args.proxy_only:
        one = report("statsd_workers=1", run_workers(1, args.rate, args.seconds))
        two = report("statsd_workers=2", run_workers(2, args.rate, args.seconds))
        print(f"ratio N=2 / N=1: {two / one:.2f}x")
    report("proxy (statsd_forward, 3 nodes)", run_proxy(args.rate, args.seconds))


if __name__ == "__main__":
    main()
