"""The relay outlives its auxiliaries (issue 19): the status server can neither stop relaying nor
keep a second Bucky from starting, and a reloaded config cannot stop the supervisor.

Reproductions kept as tests: six `crash.http 1<400 zeros> <now>` datagrams to the carbon line
port killed the http process again and again until the supervisor stopped everything; a second
Bucky 2 config on the host died on the taken default status port; a config raising
KeyboardInterrupt on SIGHUP ended the supervisor's loop, one that sleeps delayed SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from buckyproc import Bucky, carbon_ports, wait_until

pytestmark = pytest.mark.integration


def relayed(bucky: Bucky, name: str) -> bool:
    return any(line.startswith(name + " ") for line in list(bucky.stdout_lines))


def relays(bucky: Bucky, key: str, timeout: float = 10.0) -> bool:
    """Send a StatsD gauge until it shows in the --debug output."""
    return bool(wait_until(lambda: bucky.send_udp("statsd_port", f"{key}:1|g".encode())
                           or relayed(bucky, f"stats.gauges.{key}"), timeout, 0.3))


def test_six_carbon_datagrams_no_longer_stop_the_daemon(tmp_path) -> None:
    bucky = Bucky(tmp_path, {"carbon_enabled": True, **carbon_ports(), "statsd_flush_time": 0.5},
                  debug=True).start()
    try:
        http_pid = bucky.child_pids()["bucky: http"]
        # One datagram every half second for 20 s: enough for six deaths in 60 s before.
        for _ in range(40):
            datagram = f"crash.http 1{'0' * 400} {int(time.time())}\n".encode()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(datagram, ("127.0.0.1", bucky.options["carbon_line_port"]))
            time.sleep(0.5)
            assert bucky.proc.poll() is None, "\n".join(bucky.stderr_lines[-20:])
        assert bucky.child_pids().get("bucky: http") == http_pid  # never died
        status, body = bucky.http_get("/health")
        assert json.loads(body)["status"] in ("ok", "degraded"), body
        assert relays(bucky, "after_crash")
        assert not any("keeps dying" in line for line in bucky.stderr_lines)
    finally:
        assert bucky.stop() == 0


def test_a_status_server_that_keeps_dying_is_given_up_on_and_relaying_goes_on(tmp_path) -> None:
    bucky = Bucky(tmp_path, {"statsd_flush_time": 0.5}, debug=True).start()
    try:
        for _ in range(6):  # six deaths within 60 s (restart delays 0.5 + 1 + 2 + 4 + 8 s)
            pid = wait_until(lambda: bucky.child_pids().get("bucky: http"), 20)
            assert pid, "\n".join(bucky.stderr_lines[-20:])
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: bucky.child_pids().get("bucky: http") != pid, 5)
        line = bucky.wait_stderr(lambda ln: "giving up on it" in ln, 20)
        assert "ERROR" in line and "http keeps dying (6 times in 60 s" in line
        assert "trying again in 300 s" in line
        time.sleep(1.0)
        assert bucky.proc.poll() is None
        assert "bucky: http" not in bucky.child_pids()
        assert relays(bucky, "after_give_up")
    finally:
        assert bucky.stop() == 0


def test_two_bucky2_configs_on_one_host_both_start_and_relay(tmp_path) -> None:
    """No http_* option in either (as in every Bucky 2 config): the default status port is
    taken (by the first Bucky, or here by whoever holds 8127), so each logs a warning and runs
    without a status server."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 8127))
        holder.listen()
    except OSError:
        holder.close()
        holder = None  # someone else holds the default port: the same situation
    buckies = []
    try:
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            bucky = Bucky(tmp_path / name, {"statsd_flush_time": 0.5}, debug=True)
            text = bucky.config_path.read_text().splitlines()
            bucky.config_path.write_text(
                "\n".join(ln for ln in text if not ln.startswith("http_")) + "\n")
            buckies.append(bucky.start())
        for bucky in buckies:
            line = bucky.wait_stderr(lambda ln: "running without the status server" in ln, 5)
            assert "WARNING" in line and "cannot bind TCP 127.0.0.1:8127" in line
            assert "bucky: http" not in bucky.child_pids()
            assert relays(bucky, "two_on_one_host")
    finally:
        for bucky in buckies:
            assert bucky.stop() == 0
        if holder is not None:
            holder.close()


def test_a_reloaded_config_raising_keyboard_interrupt_is_refused(tmp_path) -> None:
    bucky = Bucky(tmp_path, {"statsd_flush_time": 0.5}, debug=True).start()
    try:
        good = bucky.config_path.read_text()
        bucky.config_path.write_text(good + "raise KeyboardInterrupt\n")
        bucky.send_signal(signal.SIGHUP)
        line = bucky.wait_stderr(lambda ln: "reload failed" in ln, 20)
        assert "KeyboardInterrupt" in line and "keeping the running configuration" in line
        assert relays(bucky, "after_refused_reload")  # the running config relays on
        bucky.config_path.write_text(good + "statsd_flush_time = 0.4\n")
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda ln: "configuration reloaded" in ln, 20)  # still supervising
    finally:
        t0 = time.monotonic()
        assert bucky.stop() == 0
        assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("ending", ["raise SystemExit(3)\n", "class X(BaseException): pass\n"
                                    "raise X('odd')\n"])
def test_a_reloaded_config_raising_any_base_exception_is_refused(tmp_path, ending) -> None:
    bucky = Bucky(tmp_path, {}, debug=True).start()
    try:
        bucky.config_path.write_text(bucky.config_path.read_text() + ending)
        bucky.send_signal(signal.SIGHUP)
        bucky.wait_stderr(lambda ln: "reload failed, keeping the running configuration" in ln,
                          20)
    finally:
        assert bucky.stop() == 0


def test_a_reloaded_config_that_sleeps_does_not_delay_sigterm(tmp_path) -> None:
    bucky = Bucky(tmp_path, {}, debug=True).start()
    bucky.config_path.write_text(bucky.config_path.read_text()
                                 + "import time\ntime.sleep(600)\n")
    bucky.send_signal(signal.SIGHUP)
    bucky.wait_stderr(lambda ln: "received SIGHUP" in ln, 10)
    time.sleep(1.0)  # the config is sleeping now
    t0 = time.monotonic()
    assert bucky.stop() == 0
    assert time.monotonic() - t0 < 10  # process_join_timeout is 5 s per stage at most
    assert not any("Traceback" in line for line in bucky.stderr_lines)
