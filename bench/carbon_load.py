"""Benchmark: Graphite plaintext lines over TCP, relayed to three sinks by consistent hashing.

The same generator feeds each system in turn, in one run: Bucky's carbon input (Graphite output
with `graphite_destinations` = the three sinks, `consistent-hashing`, carbon_ch) and Debian's
carbon-c-relay (a `carbon_ch` cluster of the same three sinks, instances a, b, c). The generator
(its own process) sends `bench.carbon.m<I> <value> <ts>` lines over --connections TCP
connections at a fixed offered rate for --seconds; each sink counts the `bench.carbon.` lines it
gets. Reported per system: lines/s delivered, loss, CPU seconds of the relay's process tree, and
the lines per sink (identical placement gives identical per-sink counts for both systems).

    python bench/carbon_load.py --rate 200000 --seconds 10
    python bench/carbon_load.py --rate 400000 --only bucky
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import cpu_seconds, descendants  # noqa: E402

TOKEN = b"bench.carbon."
INSTANCES = ("a", "b", "c")


class CountingSink:
    """A TCP server on 127.0.0.1 that counts lines starting with TOKEN (split-safe)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.last_at = 0.0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        keep = len(TOKEN) - 1
        rest = b""
        while True:
            try:
                data = conn.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            data = rest + data
            n = data.count(TOKEN)
            rest = data[-keep:]
            with self._lock:
                self.count += n
                self.last_at = time.monotonic()

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def wait_idle(sinks: list[CountingSink], idle: float = 2.0, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = max(s.last_at for s in sinks)
        if last and time.monotonic() - last > idle:
            return
        time.sleep(0.1)


def generator(port: int, rate: float, seconds: float, connections: int, names: int,
              out: multiprocessing.Queue) -> None:
    """Offer `rate` lines/s for `seconds` over `connections` sockets; report (sent, seconds)."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    per_chunk = 500
    ts = int(time.time())
    chunks = []
    line = 0
    for _ in range(max(names // per_chunk, 1) * 4):
        chunks.append(b"".join(b"bench.carbon.m%d %d.5 %d\n" % ((line + j) % names, j, ts)
                               for j in range(per_chunk)))
        line += per_chunk
    sent = i = 0
    t0 = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        if sent >= rate * elapsed:
            time.sleep(0.0005)
            continue
        socks[i % connections].sendall(chunks[i % len(chunks)])
        sent += per_chunk
        i += 1
    elapsed = time.perf_counter() - t0
    for s in socks:
        s.close()
    out.put((sent, elapsed))


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def free_port() -> int:
    """A port free for TCP and UDP (the carbon input's line port takes both)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def start_bucky(tmp: str, sinks: list[CountingSink]) -> tuple[subprocess.Popen, int]:
    line_port = free_port()
    destinations = [f"127.0.0.1:{s.port}:{inst}" for s, inst in zip(sinks, INSTANCES, strict=False)]
    options = {
        "carbon_enabled": True, "carbon_line_port": line_port, "carbon_pickle_port": free_port(),
        "statsd_enabled": False, "collectd_enabled": False, "metricsd_enabled": False,
        "self_metrics_interval": 0, "directory": tmp, "graphite_port": sinks[0].port,
    }
    if len(sinks) > 1:
        options.update(graphite_destinations=destinations,
                       graphite_relay_method="consistent-hashing", graphite_hash_type="carbon_ch")
    path = os.path.join(tmp, "bucky.conf.py")
    with open(path, "w") as fh:
        fh.write("".join(f"{k} = {v!r}\n" for k, v in options.items()))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen([sys.executable, "-m", "bucky", path], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(path + ".log", "w"))
    return proc, line_port


def start_c_relay(tmp: str, sinks: list[CountingSink]) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("carbon-c-relay")
    if binary is None:
        raise SystemExit("carbon-c-relay is not installed (Debian package carbon-c-relay)")
    port = free_port()
    members = " ".join(f"127.0.0.1:{s.port}={inst}" for s, inst in zip(sinks, INSTANCES,
                                                                         strict=False))
    conf = os.path.join(tmp, "relay.conf")
    with open(conf, "w") as fh:
        fh.write(f"cluster sinks carbon_ch {members};\nmatch * send to sinks stop;\n")
    proc = subprocess.Popen([binary, "-f", conf, "-p", str(port), "-q", "1000000",
                             "-l", os.path.join(tmp, "relay.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def run_one(name: str, start, sinks: list[CountingSink], args: argparse.Namespace) -> dict:
    for s in sinks:
        s.reset()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start(tmp, sinks)
        try:
            wait_port(port)
            time.sleep(1.0)
            pids = descendants(proc.pid)
            cpu0 = cpu_seconds(pids)
            out: multiprocessing.Queue = multiprocessing.Queue()
            gen = multiprocessing.Process(target=generator, args=(
                port, args.rate, args.seconds, args.connections, args.names, out))
            gen.start()
            sent, elapsed = out.get(timeout=args.seconds + 120)
            gen.join()
            wait_idle(sinks)
            cpu = cpu_seconds(descendants(proc.pid)) - cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    got = [s.count for s in sinks]
    delivered = sum(got)
    return {"system": name, "sent": sent, "offered_per_s": sent / elapsed,
            "delivered": delivered, "delivered_per_s": delivered / elapsed,
            "loss": 1 - delivered / sent if sent else 0.0, "cpu_s": cpu, "per_sink": got}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200_000, help="offered lines/s")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--names", type=int, default=10_000, help="distinct metric names")
    p.add_argument("--sinks", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--only", choices=("bucky", "carbon-c-relay"))
    args = p.parse_args()
    sinks = [CountingSink() for _ in range(args.sinks)]
    systems = [("bucky", start_bucky), ("carbon-c-relay", start_c_relay)]
    for name, start in systems:
        if args.only and name != args.only:
            continue
        r = run_one(name, start, sinks, args)
        print(f"{r['system']:15} offered {r['offered_per_s']:>10,.0f} lines/s  delivered "
              f"{r['delivered_per_s']:>10,.0f} lines/s  loss {r['loss']:6.2%}  "
              f"cpu {r['cpu_s']:6.1f} s  per sink {r['per_sink']}")
    for s in sinks:
        s.close()


if __name__ == "__main__":
    main()
