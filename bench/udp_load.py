"""Benchmark: inputs under UDP load, through the whole daemon, to a counting TCP sink.

Starts `bucky` as a subprocess (plaintext output to a local sink), sends datagrams on loopback at
a fixed rate for a fixed time, then waits until the sink is idle and reports what was delivered,
the loss, CPU seconds and peak RSS of bucky's process tree. Loss is measured by content:

* statsd: N counter lines `bench.kI:1|c`; the summed `stats_counts.bench.*` values must equal N.
* collectd: datagrams of ~1452 bytes full of GAUGE values (all distinct); values delivered =
  lines that reach the sink.
* metricsd: N counter updates of 1; the final `.count` values must sum to N.

    python bench/udp_load.py statsd --rate 100000 --per-datagram 1 --seconds 10
    python bench/udp_load.py statsd --rate 500000 --per-datagram 20
    python bench/udp_load.py collectd --rate 200000 [--workers 2]
    python bench/udp_load.py metricsd --rate 100000
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import LineSink, cpu_seconds, descendants, rss_mb  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statsd_datagrams(per: int, keys: int = 100) -> tuple[list[bytes], int]:
    grams, line = [], 0
    for _ in range(1000):
        lines = [f"bench.k{(line + j) % keys}:1|c" for j in range(per)]
        line += per
        grams.append("\n".join(lines).encode())
    return grams, per


def collectd_datagrams(start_time: float) -> tuple[list[bytes], int]:
    from bucky.protocol.collectd import decode, encode
    from bucky.protocol.collectd_records import GAUGE, ValueList

    records = [ValueList("bench-host", "bench", f"p{i // 50}", "gauge", f"v{i}", start_time, 10.0,
                         ((GAUGE, float(i)),)) for i in range(2000)]
    grams = encode(records, max_size=1452)
    # Every datagram holds the same number of values, or the count would be off: keep those.
    per = max(set(len(decode(g).records) for g in grams), key=lambda n: n)
    return [g for g in grams if len(decode(g).records) == per], per


def metricsd_datagrams(per: int = 100, keys: int = 100) -> tuple[list[bytes], int]:
    from bucky.protocol.metricsd import Action, Kind, Record, encode

    grams = []
    for i in range(200):
        recs = [Record(Kind.COUNTER, Action.UPDATE, f"bench.m{(i * per + j) % keys}", 1)
                for j in range(per)]
        grams.append(encode("", recs))
    return grams, per


def send(port: int, grams: list[bytes], per: int, rate: float, seconds: float,
         sockets: int) -> tuple[int, float]:
    """Send at `rate` values/s for `seconds`; returns (values sent, actual seconds)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    per_ms = rate / per / 1000.0  # datagrams per millisecond
    sent_grams = 0
    t0 = time.perf_counter()
    n = len(grams)
    credit = 0.0
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        target = elapsed * 1000.0 * per_ms
        burst = int(target - sent_grams + credit)
        if burst <= 0:
            time.sleep(0.0005)
            continue
        for i in range(burst):
            socks[(sent_grams + i) % sockets].sendto(grams[(sent_grams + i) % n], dest)
        sent_grams += burst
    for s in socks:
        s.close()
    return sent_grams * per, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("statsd", "collectd", "metricsd"))
    ap.add_argument("--rate", type=float, default=100000, help="values (lines, updates) per s")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--per-datagram", type=int, default=1, help="statsd lines per datagram")
    ap.add_argument("--workers", type=int, default=1, help="collectd_workers")
    args = ap.parse_args()

    keep = {"statsd": ("stats_counts.bench.",), "metricsd": ("bench.m",), "collectd": ()}
    sink = LineSink(keep_prefixes=keep[args.kind])
    port = free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-bench-")
    cfg = os.path.join(tmp, "config.py")
    with open(cfg, "w") as fh:
        fh.write(f"graphite_port = {sink.port}\ndirectory = {tmp!r}\nself_metrics_interval = 0\n"
                 f"statsd_enabled = {args.kind == 'statsd'}\n"
                 f"collectd_enabled = {args.kind == 'collectd'}\n"
                 f"metricsd_enabled = {args.kind == 'metricsd'}\n"
                 f"{args.kind}_port = {port}\nstatsd_flush_time = 1.0\n"
                 f"metricsd_default_interval = 1.0\ncollectd_workers = {args.workers}\n"
                 f"process_join_timeout = 20\n")
    proc = subprocess.Popen([sys.executable, "-m", "bucky", cfg], stderr=subprocess.PIPE,
                            text=True)
    while True:
        line = proc.stderr.readline()
        if not line or "bucky started" in line:
            break
    time.sleep(0.5)
    if args.kind == "statsd":
        grams, per = statsd_datagrams(args.per_datagram)
    elif args.kind == "collectd":
        grams, per = collectd_datagrams(time.time())
    else:
        grams, per = metricsd_datagrams()
    cpu0 = cpu_seconds(descendants(proc.pid))
    sent, took = send(port, grams, per, args.rate, args.seconds,
                      sockets=max(4, args.workers * 4))
    def delivered_now() -> int:
        if args.kind == "collectd":
            return sink.lines
        if args.kind == "metricsd":
            # counters are cumulative: the last value of each metric is its total
            last: dict[str, float] = {}
            for line in list(sink.kept):
                path, value, _ = line.split()
                last[path] = float(value)
            return int(sum(v for p, v in last.items() if p.endswith(".count")))
        return int(sum(float(line.split()[1]) for line in list(sink.kept)))

    time.sleep(2.5)  # the last flush interval
    # StatsD writes its own statistics every flush: wait for the delivered count to settle
    sink.wait_stable(delivered_now, stable=2.5, timeout=120)
    pids = descendants(proc.pid)
    cpu = cpu_seconds(pids) - cpu0
    rss = rss_mb(pids, peak=True)
    proc.terminate()
    proc.wait(60)
    sink.wait_idle(idle=0.5, timeout=10)
    delivered = delivered_now()
    loss = 1 - delivered / sent if sent else 0.0
    label = args.kind + (f" {args.per_datagram}/datagram" if args.kind == "statsd" else "")
    label += f" workers={args.workers}" if args.kind == "collectd" else ""
    print(f"{label}: offered {sent / took:,.0f}/s for {took:.1f} s ({sent:,}); delivered "
          f"{delivered:,} = {delivered / took:,.0f}/s; loss {loss:.2%}; bucky CPU {cpu:.1f} s "
          f"({cpu / took:.2f} cores); peak RSS {rss:.0f} MB (sum over processes)")


if __name__ == "__main__":
    main()
