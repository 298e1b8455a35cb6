"""Soak: the whole daemon for minutes under steady load while key cardinality grows, then shrinks.

StatsD (counters, timers, gauges; 20 lines per datagram) and collectd (GAUGE values) are sent at a
steady rate, but the set of keys in use grows linearly from `--min-keys` to `--max-keys` during the
first 40 % of the run, shrinks back during the next 40 %, and stays small for the last 20 %
(`--tail`), long enough for idle StatsD keys (statsd_delete_idlestats) and collectd series state
(collectd_series_ttl_intervals) to expire. RSS of Bucky's process tree is sampled every
`--sample` seconds. Memory must plateau while the keys are at their peak and come back down once
they expire: `--check` exits 1 when the RSS at the end is not below the peak minus half the
growth over the baseline, or when the peak exceeds `--max-rss` MB.

    python bench/soak.py --minutes 10 --statsd-rate 250000 --collectd-rate 200000
    python bench/soak.py --minutes 3 --tail 0.4 --check   # what .ci/run runs
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import LineSink, cpu_seconds, descendants, rss_mb  # noqa: E402
from bench.udp_load import free_udp_port  # noqa: E402

BLOCK = 20  # keys per StatsD datagram, and a datagram's worth of collectd values


def _sink_process(port_out: Any, lines: Any) -> None:
    sink = LineSink()
    port_out.send(sink.port)
    while True:
        time.sleep(0.5)
        lines.value = sink.lines


def start_sink() -> tuple[int, Any, multiprocessing.Process]:
    """A carbon sink in a process of its own: the sender's loop must not slow it down (a slow
    sink would fill Bucky's output buffer and the RSS figures would measure that instead)."""
    ours, theirs = multiprocessing.Pipe()
    lines = multiprocessing.Value("q", 0)
    proc = multiprocessing.Process(target=_sink_process, args=(theirs, lines), daemon=True)
    proc.start()
    return ours.recv(), lines, proc


def statsd_blocks(max_keys: int) -> list[bytes]:
    """Datagram b holds keys [b*BLOCK, (b+1)*BLOCK): a counter, a timer or a gauge each."""
    grams = []
    for b in range(max_keys // BLOCK):
        lines = []
        for k in range(b * BLOCK, (b + 1) * BLOCK):
            kind = ("c", "ms", "g")[k % 3]
            lines.append(f"soak.s{k}:{k % 97 + 1}|{kind}")
        grams.append("\n".join(lines).encode())
    return grams


def collectd_blocks(max_keys: int, start: float) -> list[bytes]:
    from bucky.protocol.collectd import encode
    from bucky.protocol.collectd_records import GAUGE, ValueList

    grams = []
    for b in range(max_keys // BLOCK):
        records = [ValueList("soak-host", "soak", f"p{b}", "gauge", f"v{k}", start, 1.0,
                             ((GAUGE, float(k)),)) for k in range(b * BLOCK, (b + 1) * BLOCK)]
        grams.extend(encode(records, max_size=1452))
    return grams


def rss_by_process(root: int) -> dict[str, float]:
    """VmRSS in MB of each process of the tree, by its title ("bucky: statsd", ...)."""
    out = {}
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                title = fh.read().split(b"\0")[0].decode(errors="replace")[:40]
        except OSError:
            continue
        out[f"{title} [{pid}]"] = rss_mb([pid], peak=False)
    return out


def cardinality(frac: float, low: int, high: int, tail: float) -> int:
    """Keys in use at `frac` of the run: up, down, then `tail` of the run at the low end."""
    ramp = (1.0 - tail) / 2
    if frac < ramp:
        share = frac / ramp
    elif frac < 2 * ramp:
        share = 1.0 - (frac - ramp) / ramp
    else:
        share = 0.0
    return max(low, int(low + (high - low) * share))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--statsd-rate", type=float, default=250000, help="lines/s")
    ap.add_argument("--collectd-rate", type=float, default=200000, help="values/s")
    ap.add_argument("--min-keys", type=int, default=1000)
    ap.add_argument("--max-keys", type=int, default=100000, help="per input")
    ap.add_argument("--tail", type=float, default=0.2,
                    help="share of the run at the low end after the ramps (keys expire then)")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--check", action="store_true", help="exit 1 unless memory came back down")
    ap.add_argument("--max-rss", type=float, default=1024.0, help="MB, with --check")
    args = ap.parse_args()

    sink_port, sink_lines, sink_proc = start_sink()
    sport, cport = free_udp_port(), free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-soak-")
    cfg = os.path.join(tmp, "config.py")
    with open(cfg, "w") as fh:
        fh.write(f"graphite_port = {sink_port}\ndirectory = {tmp!r}\nself_metrics_interval = 5\n"
                 f"statsd_port = {sport}\ncollectd_port = {cport}\nmetricsd_enabled = False\n"
                 "statsd_flush_time = 2.0\nstatsd_delete_idlestats = True\n"
                 "statsd_gauges_max_ttl = 10.0\ncollectd_series_ttl_intervals = 4\n"
                 "http_enabled = False\n")
    proc = subprocess.Popen([sys.executable, "-m", "bucky", cfg], stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line or "bucky started" in line:
            break
    sgrams = statsd_blocks(args.max_keys)
    cgrams = collectd_blocks(args.max_keys, time.time())
    cper = len(cgrams) // max(1, args.max_keys // BLOCK)  # datagrams per block of collectd keys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    seconds = args.minutes * 60
    time.sleep(1.0)
    baseline = sum(rss_by_process(proc.pid).values())
    samples: list[tuple[float, int, float]] = [(0.0, args.min_keys, baseline)]
    cpu0 = cpu_seconds(descendants(proc.pid))
    t0 = time.perf_counter()
    next_sample = args.sample
    at_peak: dict[str, float] = {}  # per process, the last sample with the keys at their peak
    at_max: dict[str, float] = {}  # per process, at the sample with the highest total
    highest = baseline
    sent_s = sent_c = 0  # datagrams
    # Each stream walks the blocks in use one after another and wraps at the current count, so
    # every key in use is sent equally often. (`datagrams sent % blocks` would not: each time the
    # count changes, that position jumps by about sent/blocks, and while the count grows the
    # sender keeps going back over the same few hundred blocks instead of covering them all.)
    si = ci = 0  # next block of each stream
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        keys = cardinality(elapsed / seconds, args.min_keys, args.max_keys, args.tail)
        blocks = max(1, keys // BLOCK)
        want_s = int(elapsed * args.statsd_rate / BLOCK)
        want_c = int(elapsed * args.collectd_rate / BLOCK)
        if want_s <= sent_s and want_c <= sent_c:
            time.sleep(0.0005)
        while sent_s < want_s:
            if si >= blocks:
                si = 0
            sock.sendto(sgrams[si], ("127.0.0.1", sport))
            si += 1
            sent_s += 1
        while sent_c < want_c:
            if ci >= blocks:
                ci = 0
            sock.sendto(cgrams[ci * cper], ("127.0.0.1", cport))
            ci += 1
            sent_c += 1
        if elapsed >= next_sample:
            next_sample += args.sample
            by_process = rss_by_process(proc.pid)
            total = sum(by_process.values())
            samples.append((elapsed, keys, total))
            if keys >= args.max_keys * 0.95:
                at_peak = by_process
            if total > highest:
                highest, at_max = total, by_process
    time.sleep(args.sample)
    at_end = rss_by_process(proc.pid)
    samples.append((time.perf_counter() - t0, args.min_keys, sum(at_end.values())))
    cpu = cpu_seconds(descendants(proc.pid)) - cpu0
    proc.terminate()
    proc.wait(60)
    time.sleep(1.0)
    lines = sink_lines.value
    sink_proc.terminate()

    print(f"soak {args.minutes:g} min: statsd {args.statsd_rate:,.0f} lines/s, collectd "
          f"{args.collectd_rate:,.0f} values/s, keys per input {args.min_keys:,} -> "
          f"{args.max_keys:,} -> {args.min_keys:,}; {lines:,} lines to carbon; "
          f"CPU {cpu / seconds:.2f} cores")
    print(f"{'t (s)':>7} {'keys':>8} {'RSS (MB)':>9}")
    step = max(1, len(samples) // 30)
    for t, k, r in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        print(f"{t:7.0f} {k:8,} {r:9.1f}")
    peak = max(r for _, _, r in samples)
    at_peak_keys = [r for t, k, r in samples if k >= args.max_keys * 0.9]
    end = samples[-1][2]
    print(f"baseline {baseline:.1f} MB, peak {peak:.1f} MB, at peak keys {min(at_peak_keys):.1f}"
          f"-{max(at_peak_keys):.1f} MB, end {end:.1f} MB" if at_peak_keys else
          f"baseline {baseline:.1f} MB, peak {peak:.1f} MB, end {end:.1f} MB")
    print("per process, MB at peak keys, at the highest sample -> end:")
    nan = float("nan")
    for name in sorted(set(at_peak) | set(at_max) | set(at_end)):
        print(f"  {name:46} {at_peak.get(name, nan):7.1f} {at_max.get(name, nan):7.1f} -> "
              f"{at_end.get(name, nan):7.1f}")
    if args.check:
        ok = peak <= args.max_rss and end <= peak - (peak - baseline) / 2
        print("soak check:", "passed" if ok else "FAILED (memory did not come back down)")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
