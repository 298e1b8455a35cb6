"""Fault scenarios from fault-scenarios.md, each against the daemon as a subprocess on loopback.

Scenarios 1, 2, 9 and 10 are covered by test_daemon.py and test_cli.py; this module adds the rest
(3 slow carbon, 4 resetting carbon, 5 SIGTERM under load, 6 SIGKILL of each child, 7 UDP flood,
8 disk full for the saved gauges), scaled down so the module runs in well under three minutes on
two cores. Each test prints the figures it measured (`pytest -s` shows them) and asserts the
scenario's pass criterion. Every loop is bounded in count and time; synchronisation is by polling
with a deadline; the only sleeps pace senders and samplers.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from buckyproc import Bucky, process_tree
from fakecarbon import FakeCarbon

from bucky.daemon.selfmetrics import expand_prefix
from bucky.protocol.collectd import encode
from bucky.protocol.collectd_records import GAUGE, ValueList
from bucky.sender.metricsd import MetricsdClient

pytestmark = pytest.mark.integration
SELF = expand_prefix("bucky.{host}") + "."  # self-metrics of this host

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


# --- helpers ------------------------------------------------------------------------------------


def report(scenario: str, **figures: object) -> None:
    text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in figures.items())
    print(f"\n[fault {scenario}] {text}", flush=True)


def tree_rss_mb(root: int) -> float:
    total_kb = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total_kb / 1024.0


def tree_cpu_ticks(root: int) -> dict[int, int]:
    """pid -> utime + stime (clock ticks) for every process of the tree."""
    out = {}
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[pid] = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLK_TCK


class RssSampler(threading.Thread):
    """Samples the RSS of bucky's process tree every `period` seconds until stopped."""

    def __init__(self, root: int, period: float = 0.7, limit_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.period = period
        self.limit_s = limit_s
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit_s
        while not self.done.is_set() and time.monotonic() < end:
            self.samples.append((time.monotonic(), tree_rss_mb(self.root)))
            self.done.wait(self.period)

    def finish(self) -> list[tuple[float, float]]:
        self.done.set()
        self.join(5)
        return self.samples


def slope_mb_per_s(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, MB) samples."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


class PacedSender(threading.Thread):
    """Sends `datagrams` round-robin to 127.0.0.1:`port` at `rate` datagrams/s for `duration` s."""

    def __init__(self, port: int, datagrams: list[bytes], rate: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.addr = (HOST, port)
        self.datagrams = datagrams
        self.rate = rate
        self.duration = duration
        self.sent = 0
        self.errors = 0
        self.elapsed = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        n = len(self.datagrams)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            start = time.monotonic()
            while not self.halt.is_set():
                elapsed = time.monotonic() - start
                if elapsed >= self.duration:
                    break
                due = min(int(elapsed * self.rate) - self.sent - self.errors, 5000)
                for _ in range(max(due, 0)):
                    try:
                        sock.sendto(self.datagrams[(self.sent + self.errors) % n], self.addr)
                        self.sent += 1
                    except OSError:
                        self.errors += 1
                time.sleep(0.005)
            self.elapsed = time.monotonic() - start

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# A sender in its own process (scenario 7): max rate or paced; prints what it sent as JSON.
_SENDER = r"""
import json, socket, sys, time
port, rate, duration, prefix = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
datagram = "\n".join(f"{prefix}.k{j}:1|c" for j in range(40)).encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = ("127.0.0.1", port)
sent = errors = 0
start = time.monotonic()
end = start + duration
if rate <= 0:  # as fast as possible
    while True:
        for _ in range(256):
            try:
                s.sendto(datagram, addr)
                sent += 1
            except OSError:
                errors += 1
        if time.monotonic() >= end:
            break
else:
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int((now - start) * rate) - sent - errors, 20000)
        for _ in range(max(due, 0)):
            try:
                s.sendto(datagram, addr)
                sent += 1
            except OSError:
                errors += 1
        time.sleep(0.002)
print(json.dumps({"sent": sent, "errors": errors, "elapsed": time.monotonic() - start}))
"""


def run_sender(port: int, rate: float, duration: float, prefix: str) -> dict[str, float]:
    """One sender process: 40-line StatsD datagrams at `rate` datagrams/s (<= 0: max rate)."""
    proc = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(rate), str(duration),
                             prefix], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return json.loads(out)


def udp_socket_stats(port: int) -> tuple[int, int]:
    """(rx_queue bytes, drops) of the UDP socket bound to 127.0.0.1:`port`, from /proc/net/udp."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                rx_queue = int(fields[4].split(":")[1], 16)
                return rx_queue, int(fields[-1])
    raise AssertionError(f"no UDP socket on {local} in /proc/net/udp")


def collectd_gauges(host: str, names: list[str], value: float = 1.0) -> list[bytes]:
    records = [ValueList(host, "faults", "", "gauge", name, time.time(), 10.0, ((GAUGE, value),))
               for name in names]
    return encode(records)


def send_collectd(bucky: Bucky, host: str, name: str, value: float = 1.0) -> None:
    for datagram in collectd_gauges(host, [name], value):
        bucky.send_udp("collectd_port", datagram)


def wait_path(carbon: FakeCarbon, path: str, timeout: float) -> float | None:
    """Seconds until `path` arrived, or None."""
    t0 = time.monotonic()
    if carbon.wait_for(lambda pts: any(p == path for p, _, _ in pts), timeout):
        return time.monotonic() - t0
    return None


def assert_no_orphans(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if _alive(pid)]
        if left:
            time.sleep(0.05)
    assert not left, f"children outlived the supervisor: {left}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def counter_total(carbon: FakeCarbon, prefix: str) -> float:
    """Sum of every flushed value of the StatsD counters `stats_counts.<prefix>.*`."""
    head = f"stats_counts.{prefix}."
    return sum(v for p, v, _ in carbon.points if p.startswith(head))


def wait_stable(read, period: float, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Poll `read()` until it has not changed for `period` s (or `timeout`); the last value."""
    deadline = time.monotonic() + timeout
    value = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_value = read()
        if now_value != value:
            value, since = now_value, time.monotonic()
        elif time.monotonic() - since >= period:
            break
    return value


# --- 3. Graphite slow / blocking reader ---------------------------------------------------------

LOAD_SAMPLES_PER_S = 12_000
LOAD_SECONDS = 10.0  # scenario: 15 s


@pytest.mark.parametrize("buffer_size", [None, 5_000], ids=["default-buffer", "small-buffer"])
def test_3_stalled_carbon_keeps_memory_bounded_and_recovers(tmp_path, buffer_size):
    """A carbon that never reads: memory stays bounded, the excess is dropped and counted.

    With graphite_buffer_size at its default (1,000,000 datapoints) the criterion passes, but in
    10 s at 12k samples/s the kernel's socket buffers take the first ~7 s and the bound is never
    reached, so nothing is dropped: the run checks that everything is buffered and delivered.
    (Measured separately: 1.8M samples offered at 120k/s fill the default buffer at +35 MB RSS,
    then RSS is flat and 716k datapoints are counted in dropped.buffer_full.) The small-buffer
    run reaches the bound within the test and checks that every sample offered is either
    delivered or counted as dropped.
    """
    carbon = FakeCarbon(rcvbuf=4096).start()  # the window is fixed at the handshake
    opts = {"graphite_port": carbon.port, "statsd_flush_time": 10.0,
            "graphite_reconnect_delay": 0.1, "graphite_backoff_max": 1.0,
            "self_metrics_interval": 1.0}
    if buffer_size is not None:
        opts["graphite_buffer_size"] = buffer_size
    bucky = Bucky(tmp_path, opts).start()
    try:
        send_collectd(bucky, "k3", "warmup")
        assert wait_path(carbon, "k3.faults.gauge.warmup", 10) is not None
        carbon.stall()
        # 100 distinct datagrams of 10 gauge samples each (1,000 series), 1,200 datagrams/s.
        datagrams = [d for i in range(100)
                     for d in collectd_gauges("k3", [f"s{i * 10 + j}" for j in range(10)])]
        assert len(datagrams) == 100  # 10 samples fit one datagram
        sampler = RssSampler(bucky.proc.pid, period=0.7)
        sampler.start()
        sender = PacedSender(bucky.ports["collectd_port"], datagrams,
                             LOAD_SAMPLES_PER_S / 10, LOAD_SECONDS)
        sender.start()
        sender.join(LOAD_SECONDS + 10)
        samples = sampler.finish()
        assert bucky.proc.poll() is None, "bucky died while carbon was stalled"
        offered = sender.sent * 10
        t_end = samples[-1][0]
        growth = max(v for _, v in samples) - samples[0][1]
        tail_slope = slope_mb_per_s([(t, v) for t, v in samples if t >= t_end - 5.0])
        carbon.resume()
        t_resume = time.monotonic()
        send_collectd(bucky, "k3", "probe")
        probe_s = wait_path(carbon, "k3.faults.gauge.probe", 30)

        def delivered() -> int:
            return sum(p.startswith("k3.faults.gauge.s") for p, _, _ in carbon.points)

        def dropped() -> float:
            return sum(v for p, v, _ in carbon.points if p == SELF + "graphite.dropped.buffer_full")

        got = wait_stable(lambda: (delivered(), dropped()), 2.5, 30)  # self-metrics every 1 s
        report(f"3/{'default' if buffer_size is None else buffer_size}", offered=offered,
               rate=offered / sender.elapsed, rss_start_mb=samples[0][1], rss_growth_mb=growth,
               tail_slope_mb_s=tail_slope,
               probe_after_resume_s=probe_s if probe_s is not None else -1.0,
               delivered=got[0], counted_buffer_full_drops=got[1],
               settled_after_resume_s=time.monotonic() - t_resume)
        assert offered >= 0.8 * LOAD_SAMPLES_PER_S * LOAD_SECONDS, "sender fell behind"
        assert growth < 64, f"RSS grew {growth:.1f} MB"
        assert tail_slope < 0.5, f"RSS still growing {tail_slope:.2f} MB/s at the end"
        assert probe_s is not None, "probe not delivered within 30 s of resume"
        if buffer_size is None:
            assert got == (offered, 0), "the default buffer should have held everything"
        else:
            assert got[1] > 0, "the bound was never reached: the test did not stall bucky"
            assert abs(got[0] + got[1] - offered) <= 0.01 * offered, (
                f"offered {offered}, delivered {got[0]}, counted as dropped {got[1]}")
    finally:
        assert bucky.stop() == 0
        carbon.stop()


# --- 4. Graphite accepting then resetting connections --------------------------------------------

RESET_SECONDS = 4.0  # scenario: 8 s and < 200 connects; scaled: 4 s and < 100


def test_4_resetting_carbon_is_not_hammered(tmp_path):
    carbon = FakeCarbon()
    carbon.reset_mode = True
    carbon.start()
    # A small first delay (the default backoff factor and maximum): a relay that treated every
    # accepted-then-reset connection as a success would reconnect hundreds of times here.
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "graphite_reconnect_delay": 0.05,
                             "statsd_flush_time": 10.0}).start()
    try:
        root = bucky.proc.pid
        connects0 = carbon.connections
        cpu0, t0 = tree_cpu_ticks(root), time.monotonic()
        sent = 0
        while time.monotonic() - t0 < RESET_SECONDS and sent < 100:
            send_collectd(bucky, "k4", f"during{sent}")
            sent += 1
            time.sleep(0.5)  # 2 samples/s
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds_between(cpu0, tree_cpu_ticks(root)) / elapsed
        connects = carbon.connections - connects0
        assert bucky.proc.poll() is None, "bucky died while carbon reset every connection"
        carbon.reset_mode = False
        t_normal = time.monotonic()
        probe_s = None
        for _ in range(30):  # one probe a second, up to 30 s
            send_collectd(bucky, "k4", "probe")
            if carbon.wait_for(lambda pts: any(p == "k4.faults.gauge.probe" for p, _, _ in pts),
                               1.0):
                probe_s = time.monotonic() - t_normal
                break
        outage = {f"k4.faults.gauge.during{i}" for i in range(sent)}
        kept = wait_stable(lambda: len(outage & set(carbon.paths())), 0.5, 5)
        report("4", seconds=elapsed, connects=connects, connects_per_8s=connects * 8 / elapsed,
               cpu_cores=cpu, probe_s=probe_s if probe_s is not None else -1.0,
               outage_samples_delivered=f"{kept}/{sent}")
        assert connects < 200 * elapsed / 8, f"{connects} connects in {elapsed:.1f} s"
        assert cpu < 0.8, f"{cpu:.2f} cores while carbon reset connections"
        assert probe_s is not None and probe_s < 30
    finally:
        assert bucky.stop() == 0
        carbon.stop()


# --- 5. SIGTERM during load ----------------------------------------------------------------------


def test_5_sigterm_under_load_flushes_and_exits_0(tmp_path):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 10.0}).start()
        load = [("\n".join(f"load.k{i}.{j}:1|c" for j in range(40))).encode() for i in range(25)]
        sender = PacedSender(bucky.ports["statsd_port"], load, 50_000 / 40, 60.0)
        sender.start()
        try:
            children = list(bucky.child_pids().values())
            time.sleep(1.0)  # the load runs for a second first
            # Flushes are on the 10 s wall-clock grid: keep clear of a boundary, so that only the
            # final flush can deliver what is sent next (pacing, bounded to 2 s).
            for _ in range(40):
                if 0.5 < time.time() % 10.0 < 8.0:
                    break
                time.sleep(0.05)
            bucky.send_udp("statsd_port", b"zqterm.c:5|c\nzqterm.g:7|g\nzqterm.t:3|ms")
            time.sleep(0.1)
            before = set(carbon.paths())
            t0 = time.monotonic()
            bucky.send_signal(signal.SIGTERM)
            code = bucky.proc.wait(15)
            exit_s = time.monotonic() - t0
        finally:
            sender.stop()
            bucky.kill()
        assert carbon.wait_for(lambda pts: any(p == "stats_counts.zqterm.c" for p, _, _ in pts),
                               2)
        got = {p: v for p, v, _ in carbon.points}
        report("5", load_lines_per_s=sender.sent * 40 / max(sender.elapsed, 1e-9),
               exit_code=code, exit_s=exit_s, counter=got.get("stats_counts.zqterm.c"),
               gauge=got.get("stats.gauges.zqterm.g"), timer_upper=got.get(
                   "stats.timers.zqterm.t.upper"))
        assert sender.sent * 40 / max(sender.elapsed, 1e-9) > 25_000, "the load fell behind"
        assert code == 0 and exit_s < 15
        assert "stats_counts.zqterm.c" not in before, "flushed before SIGTERM: not a final flush"
        assert got.get("stats_counts.zqterm.c") == 5
        assert got.get("stats.gauges.zqterm.g") == 7
        assert_no_orphans(children)


# --- 6. SIGKILL of each child ------------------------------------------------------------------

_IDENTITY_PROCESSOR = (
    "def processor(host, name, value, timestamp):\n"
    "    return host, name, value, timestamp\n"
)


def _send_all_protocols(bucky: Bucky, tag: str) -> None:
    bucky.send_udp("statsd_port", f"k6.{tag}:1|c".encode())
    send_collectd(bucky, "k6", tag)
    with MetricsdClient(port=bucky.ports["metricsd_port"], hostname="") as m:
        m.gauge(f"k6.{tag}", 1)


def _protocol_paths(tag: str) -> dict[str, str]:
    return {"statsd": f"stats_counts.k6.{tag}", "collectd": f"k6.faults.gauge.{tag}",
            "metricsd": f"k6.{tag}.value"}


@pytest.mark.parametrize("child", ["statsd", "collectd", "metricsd", "graphite", "processor"])
def test_6_sigkill_of_a_child_every_protocol_delivers_again(tmp_path, child):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5,
                                 "metricsd_default_interval": 0.5,
                                 "graphite_reconnect_delay": 0.1, "graphite_backoff_max": 0.5},
                      extra_config=_IDENTITY_PROCESSOR if child == "processor" else "").start()
        try:
            titles = bucky.child_pids()
            assert f"bucky: {child}" in titles, titles
            _send_all_protocols(bucky, "before")
            before = set(_protocol_paths("before").values())
            assert carbon.wait_for(lambda pts: before <= {p for p, _, _ in pts}, 10)
            os.kill(titles[f"bucky: {child}"], signal.SIGKILL)
            t_kill = time.monotonic()
            want = _protocol_paths("after")
            arrived: dict[str, float] = {}
            for _ in range(60):  # keep sending on every protocol, every 0.2 s, up to ~12 s
                if time.monotonic() - t_kill > 12 or len(arrived) == len(want):
                    break
                _send_all_protocols(bucky, "after")
                missing = {path for proto, path in want.items() if proto not in arrived}
                if not carbon.wait_for(lambda pts, m=missing: any(p in m for p, _, _ in pts), 0.2):
                    continue
                paths = set(carbon.paths())
                for proto, path in want.items():
                    if proto not in arrived and path in paths:
                        arrived[proto] = time.monotonic() - t_kill
            alive = bucky.proc.poll() is None
            replaced = bucky.child_pids().get(f"bucky: {child}")
            report(f"6/{child}", main_alive=alive, replaced=replaced not in (None,
                   titles[f"bucky: {child}"]), **{f"{p}_s": arrived.get(p, -1.0) for p in want})
            assert alive, f"bucky exited with {bucky.proc.returncode}"
            missing = set(want) - {p for p, s in arrived.items() if s <= 10.0}
            assert not missing, f"no delivery within 10 s after killing {child}: {missing}"
        finally:
            assert bucky.stop() == 0


# --- 7. UDP flood at 5x capacity ---------------------------------------------------------------

CAPACITY_BURST_S = 1.5  # scenario: 3 s
FLOOD_S = 5.0  # scenario: 10 s


def test_7_udp_flood_is_survived_and_the_loss_is_counted(tmp_path):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5}).start()
        try:
            port = bucky.ports["statsd_port"]
            root = bucky.proc.pid
            # Capacity: a max-rate burst, then time until the socket's backlog is handled.
            _, drops0 = udp_socket_stats(port)
            t0 = time.monotonic()
            burst = run_sender(port, 0, CAPACITY_BURST_S, "cap")
            for _ in range(600):  # the kernel backlog drains (bounded: 30 s)
                if udp_socket_stats(port)[0] == 0:
                    break
                time.sleep(0.05)
            drained_s = time.monotonic() - t0
            cap_lines = wait_stable(lambda: counter_total(carbon, "cap"), 2.0, 15)
            _, drops1 = udp_socket_stats(port)
            capacity = cap_lines / drained_s  # lines/s
            # The flood: 5x capacity (in 40-line datagrams) from a sender process.
            rss0 = tree_rss_mb(root)
            sampler = RssSampler(root, period=0.5)
            sampler.start()
            flood = run_sender(port, 5 * capacity / 40, FLOOD_S, "flood")
            samples = sampler.finish()
            assert bucky.proc.poll() is None, "bucky died during the flood"
            t_flood_end = time.monotonic()
            send_collectd(bucky, "k7", "canary")
            canary_s = wait_path(carbon, "k7.faults.gauge.canary", 20)
            for _ in range(600):
                if udp_socket_stats(port)[0] == 0:
                    break
                time.sleep(0.05)
            flood_lines = wait_stable(lambda: counter_total(carbon, "flood"), 2.0, 20)
            _, drops2 = udp_socket_stats(port)
            growth = max(v for _, v in samples) - rss0
            handled = flood_lines / 40
            kernel_drops = drops2 - drops1
            report("7", capacity_lines_s=capacity, burst_sent_lines=burst["sent"] * 40,
                   burst_drops=drops1 - drops0, flood_target_lines_s=5 * capacity,
                   flood_achieved_lines_s=flood["sent"] * 40 / flood["elapsed"],
                   flood_sent_datagrams=flood["sent"], handled_datagrams=handled,
                   kernel_drops=kernel_drops, uncounted=flood["sent"] - handled - kernel_drops,
                   rss_growth_mb=growth,
                   canary_s=canary_s if canary_s is not None else -1.0,
                   canary_after_flood_s=time.monotonic() - t_flood_end)
            assert growth < 64, f"RSS grew {growth:.1f} MB during the flood"
            assert canary_s is not None, "collectd canary not delivered within 20 s"
            assert kernel_drops > 0, "the flood did not exceed bucky's capacity: nothing tested"
            # Every datagram sent is either handled (and flushed) or counted as a kernel drop.
            lost = flood["sent"] - handled
            assert abs(lost - kernel_drops) <= 0.01 * flood["sent"], (
                f"{lost} datagrams lost, {kernel_drops} counted by the kernel")
        finally:
            assert bucky.stop() == 0


# --- 8. Disk full for the persistent-gauges file -------------------------------------------------


def _fill(directory: Path) -> int:
    """Write a filler file until the filesystem is full; bytes written."""
    written = 0
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(10_000):
            try:
                written += os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    finally:
        os.close(fd)
    return written


def test_8_disk_full_when_saving_gauges(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 64 KiB tmpfs")
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)],
                             capture_output=True, text=True, timeout=10)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with FakeCarbon() as carbon:
            opts = {"graphite_port": carbon.port, "statsd_flush_time": 0.5,
                    "statsd_persistent_gauges": True, "directory": str(state)}
            saved = state / "gauges.save"
            # Run 1: two gauges, saved at shutdown.
            first = Bucky(tmp_path, opts).start()
            try:
                first.send_udp("statsd_port", b"fault8.g1:11|g\nfault8.g2:22|g")
                assert carbon.wait_for(lambda pts: {"stats.gauges.fault8.g1",
                                                    "stats.gauges.fault8.g2"}
                                       <= {p for p, _, _ in pts}, 10)
            finally:
                assert first.stop() == 0
            assert saved.exists(), "run 1 saved no gauges"
            original = saved.read_bytes()
            filled = _fill(state)
            # Run 2: 1000 new gauges; the save at shutdown hits ENOSPC.
            second = Bucky(tmp_path, opts).start()
            try:
                for i in range(0, 1000, 50):
                    second.send_udp("statsd_port", "\n".join(
                        f"fault8.new{j}:{j}|g" for j in range(i, i + 50)).encode())
                assert carbon.wait_for(lambda pts: sum(p.startswith("stats.gauges.fault8.new")
                                                       for p, _, _ in pts) >= 1000, 15)
            finally:
                t0 = time.monotonic()
                code = second.stop(timeout=20)
                stop_s = time.monotonic() - t0
            save_errors = [line for line in second.stderr_lines if "cannot save gauges" in line]
            tracebacks = [line for line in second.stderr_lines if "Traceback" in line]
            intact = saved.read_bytes() == original
            leftovers = sorted(p.name for p in state.iterdir()
                               if p.name not in ("gauges.save", "filler"))
            # Run 3 on the full filesystem: restores the two gauges and forwards a canary.
            carbon.clear()
            third = Bucky(tmp_path, opts).start()
            try:
                send_collectd(third, "k8", "canary")
                canary_s = wait_path(carbon, "k8.faults.gauge.canary", 10)
                restored = carbon.wait_for(lambda pts: {"stats.gauges.fault8.g1",
                                                        "stats.gauges.fault8.g2"}
                                           <= {p for p, _, _ in pts}, 10)
            finally:
                third_code = third.stop()
            report("8", filler_bytes=filled, second_exit=code, second_stop_s=stop_s,
                   save_error_logged=bool(save_errors), state_file_intact=intact,
                   leftover_files=leftovers or "none", third_canary_s=canary_s
                   if canary_s is not None else -1.0, gauges_restored=restored,
                   third_exit=third_code)
            assert code == 0 and stop_s < 15, "the failed save crashed or hung the shutdown"
            assert save_errors, "ENOSPC on saving gauges was not logged"
            assert not tracebacks, "\n".join(second.stderr_lines[-20:])
            assert intact, "the earlier state file was damaged by the failed save"
            assert not leftovers, f"temporary files left behind: {leftovers}"
            assert canary_s is not None, "third start did not forward the canary"
            assert restored, "the saved gauges were not restored on the third start"
            assert third_code == 0
    finally:
        for _ in range(3):
            done = subprocess.run(["umount", str(state)], capture_output=True, timeout=10)
            if done.returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "-l", str(state)], capture_output=True, timeout=10)
