"""Benchmark: the disk spool on the live path, and its replay.

One daemon, one collectd load at a fixed offered rate, three phases of `--seconds` each:

1. carbon up: the input rate Bucky sustains (values delivered / s);
2. carbon down (the sink closes its listener and connections), the spool active: the input rate
   it sustains now (every value of this phase is delivered later, from the spool);
3. carbon up again, the same load still offered: how fast the spool drains (replay rate) while
   the live data keeps flowing.

Each phase's values carry their own host name, and the sink counts them by that token, so the
phases are told apart in what arrives. Kernel drops on the UDP socket are reported too.

    python bench/spool.py [--rate 100000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import cpu_seconds, descendants, rss_mb  # noqa: E402
from bench.udp_load import free_udp_port, send  # noqa: E402

PHASES = (b"phaseup1.", b"phasedown.", b"phaseup2.")


class SwitchableSink:
    """A plaintext carbon on 127.0.0.1 that can go away (listener and connections) and come back
    on the same port; counts lines per phase token."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.counts = dict.fromkeys(PHASES, 0)
        self.last_at = 0.0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._up = False

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self._listener = sock
        self._up = True
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def down(self) -> None:
        self._up = False
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._conns = []

    def _accept(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while self._up:
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        tail = b""
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            joined = tail + data
            with self._lock:
                for token in PHASES:
                    self.counts[token] += joined.count(token) - tail.count(token)
                self.last_at = time.monotonic()
            tail = joined[-16:]


def datagrams(host: str, start_time: float) -> tuple[list[bytes], int]:
    from bucky.protocol.collectd import decode, encode
    from bucky.protocol.collectd_records import GAUGE, ValueList

    records = [ValueList(host, "bench", f"p{i // 50}", "gauge", f"v{i}", start_time, 10.0,
                         ((GAUGE, float(i)),)) for i in range(2000)]
    grams = encode(records, max_size=1452)
    per = max(set(len(decode(g).records) for g in grams), key=lambda n: n)
    return [g for g in grams if len(decode(g).records) == per], per


def udp_drops(port: int) -> int:
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                total += int(fields[-1])
    return total


def wait_idle(sink: SwitchableSink, idle: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - sink.last_at < idle:
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100000, help="collectd values per s offered")
    ap.add_argument("--seconds", type=float, default=10, help="length of each phase")
    ap.add_argument("--buffer", type=int, default=20000, help="graphite_buffer_size")
    args = ap.parse_args()

    sink = SwitchableSink()
    sink.up()
    port = free_udp_port()
    tmp = tempfile.mkdtemp(prefix="bucky-bench-spool-")
    cfg = os.path.join(tmp, "config.py")
    with open(cfg, "w") as fh:
        fh.write(f"graphite_port = {sink.port}\ndirectory = {tmp!r}\nself_metrics_interval = 0\n"
                 f"statsd_enabled = False\nmetricsd_enabled = False\ncollectd_port = {port}\n"
                 f"graphite_buffer_size = {args.buffer}\ngraphite_reconnect_delay = 0.2\n"
                 f"graphite_backoff_max = 0.5\nprocess_join_timeout = 20\n")
    proc = subprocess.Popen([sys.executable, "-m", "bucky", cfg], stderr=subprocess.PIPE,
                            text=True)
    while True:
        line = proc.stderr.readline()
        if not line or "bucky started" in line:
            break
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()  # keep it drained
    time.sleep(0.5)
    now = time.time()
    loads = [datagrams(token.decode().rstrip("."), now) for token in PHASES]
    results = []
    cpu0 = cpu_seconds(descendants(proc.pid))
    drops0 = udp_drops(port)
    # 1. carbon up
    sent1, took1 = send(port, *loads[0], args.rate, args.seconds, sockets=4)
    drops1 = udp_drops(port) - drops0
    time.sleep(2)
    # 2. carbon down, spool active
    sink.down()
    time.sleep(0.5)
    sent2, took2 = send(port, *loads[1], args.rate, args.seconds, sockets=4)
    drops2 = udp_drops(port) - drops0 - drops1
    spool_dir = os.path.join(tmp, "spool")
    spool_size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(spool_dir)
                     for f in files)
    # 3. carbon up, the same load keeps coming: the spool drains behind it
    sink.up()
    up_at = time.monotonic()
    done = threading.Event()
    replay_end = [0.0]

    def watch() -> None:
        while not done.is_set():
            if sink.counts[PHASES[1]] >= sent2 - drops2 * loads[1][1] - 1000:
                replay_end[0] = time.monotonic()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent3, took3 = send(port, *loads[2], args.rate, args.seconds, sockets=4)
    drops3 = udp_drops(port) - drops0 - drops1 - drops2
    watcher.join(120)
    done.set()
    wait_idle(sink, 1.5, 120)
    pids = descendants(proc.pid)
    cpu = cpu_seconds(pids) - cpu0
    rss = rss_mb(pids, peak=True)
    proc.terminate()
    proc.wait(60)
    wait_idle(sink, 0.5, 10)
    c = sink.counts
    up_rate = c[PHASES[0]] / took1
    down_rate = c[PHASES[1]] / took2
    replay_time = (replay_end[0] - up_at) if replay_end[0] else float("nan")
    results = [
        f"offered {args.rate:,.0f} collectd values/s, {args.seconds:.0f} s per phase, "
        f"graphite_buffer_size {args.buffer:,}",
        f"1 carbon up:   sent {sent1:,}, delivered {c[PHASES[0]]:,} = {up_rate:,.0f}/s "
        f"(kernel drops {drops1 * loads[0][1]:,} values)",
        f"2 carbon down: sent {sent2:,}, delivered later {c[PHASES[1]]:,} = {down_rate:,.0f}/s "
        f"(kernel drops {drops2 * loads[1][1]:,}); {down_rate / up_rate:.0%} of the carbon-up "
        f"rate; spool {spool_size / 1e6:.0f} MB after the phase",
        f"3 carbon up again: live {c[PHASES[2]]:,} of {sent3:,} (kernel drops "
        f"{drops3 * loads[2][1]:,}); the spool's "
        f"{c[PHASES[1]]:,} values drained in {replay_time:.1f} s = "
        f"{c[PHASES[1]] / replay_time:,.0f}/s while the live load ran "
        f"({c[PHASES[1]] / replay_time / (sent3 / took3):.1f}x the live rate)",
        f"bucky CPU {cpu:.1f} s, peak RSS {rss:.0f} MB (sum over processes)",
    ]
    print("\n".join(results))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
