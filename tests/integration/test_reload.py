"""Reloads that cannot take the daemon down, boot as an event, sd_notify and log_timestamps:
the daemon as a subprocess on loopback (tests/buckyproc.py, tests/fakecarbon.py)."""

import os
import re
import signal
import socket
import threading
import time

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon

pytestmark = pytest.mark.integration

OPTS = {"statsd_flush_time": 0.5, "graphite_reconnect_delay": 0.1, "graphite_backoff_max": 0.5,
        "metricsd_enabled": False, "collectd_enabled": False}


class Traffic:
    """StatsD counter increments sent at a steady pace from a thread, counted."""

    def __init__(self, bucky: Bucky, name: str = "flow.count") -> None:
        self.bucky, self.name, self.sent = bucky, name, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            port = self.bucky.ports["statsd_port"]
            for _ in range(200_000):  # bounded
                if self._stop.is_set():
                    break
                s.sendto(f"{self.name}:1|c".encode(), ("127.0.0.1", port))
                self.sent += 1
                time.sleep(0.002)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def total(carbon: FakeCarbon, path: str) -> float:
    return sum(v for p, v, _ in carbon.points if p == path)


def data_pids(bucky: Bucky) -> dict[str, int]:
    return {t: p for t, p in bucky.child_pids().items() if t.startswith("bucky: ")}


def write_plugin(tmp_path, body: str, name: str = "sleepy"):
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / f"{name}.py").write_text(body)
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f'<Plugin python>\n  ModulePath "{plugins}"\n  Import "{name}"\n</Plugin>\n')
    return conf


def test_sighup_with_each_kind_of_bad_config_keeps_everything_running(tmp_path):
    types_db = tmp_path / "bad_types.db"
    types_db.write_text("mytype value:NOPE:0:U\n")
    auth = tmp_path / "empty_auth"
    auth.write_text("# nobody\n")
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    bad = {
        "syntax": ("statsd_port = \n", "reload failed"),
        "value": ("statsd_flush_time = -1\n", "statsd_flush_time: expected"),
        "types.db": (f"collectd_enabled = True\ncollectd_types = [{str(types_db)!r}]\n",
                     "collectd_types: "),
        "auth file": ("collectd_enabled = True\ncollectd_security_level = 'Sign'\n"
                      f"collectd_auth_file = {str(auth)!r}\n", "collectd_auth_file: "),
        "plugin": ("collectd_python_config = "
                   f"{str(write_plugin(tmp_path, '', 'gone'))!r}\n", "cannot import plugin"),
        "port in use": (f"metricsd_enabled = True\nmetricsd_port = {taken.getsockname()[1]}\n",
                        "cannot bind UDP 127.0.0.1:"),
    }
    (tmp_path / "plugins" / "gone.py").unlink()  # the plugin config names a missing module
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port}).start()
        try:
            good = bucky.config_path.read_text()
            before = data_pids(bucky)
            with Traffic(bucky) as traffic:
                for kind, (text, words) in bad.items():
                    seen = len(bucky.stderr_lines)
                    bucky.config_path.write_text(good + text)
                    bucky.send_signal(signal.SIGHUP)
                    line = bucky.wait_stderr(
                        lambda ln, seen=seen: "reload failed, keeping the running configuration"
                        in ln and bucky.stderr_lines.index(ln) >= seen, 20)
                    assert words in line, (kind, line)
                    assert bucky.proc.poll() is None, kind
                time.sleep(0.3)
            assert data_pids(bucky) == before  # nothing was restarted
            assert not [ln for ln in bucky.stderr_lines if "Traceback" in ln]
            bucky.config_path.write_text(good)
        finally:
            assert bucky.stop() == 0
            taken.close()
        assert carbon.wait_for(lambda pts: total(carbon, "stats_counts.flow.count") >= traffic.sent,
                               10)
        assert total(carbon, "stats_counts.flow.count") == traffic.sent > 100


def test_valid_reload_that_replaces_the_outputs_loses_nothing(tmp_path):
    with FakeCarbon() as carbon_a, FakeCarbon() as carbon_b:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon_a.port}).start()
        try:
            old_graphite = data_pids(bucky)["bucky: graphite"]
            with Traffic(bucky) as traffic:
                time.sleep(0.5)
                bucky.config_path.write_text(bucky.config_path.read_text()
                                             + f"graphite_port = {carbon_b.port}\n")
                bucky.send_signal(signal.SIGHUP)
                line = bucky.wait_stderr(lambda ln: "configuration reloaded" in ln, 30)
                assert "outputs kept running" not in line
                time.sleep(1.0)
            assert data_pids(bucky)["bucky: graphite"] != old_graphite
        finally:
            assert bucky.stop() == 0
        # The new graphite process was up before the old inputs handed over (and before the
        # old graphite process was told to stop).
        lines = bucky.stderr_lines
        assert any("reload: " in ln and "graphite" in ln.split("reload: ")[1].split(" up next")[0]
                   and "up next to the running processes" in ln for ln in lines), lines

        def got(_pts=None):
            return (total(carbon_a, "stats_counts.flow.count")
                    + total(carbon_b, "stats_counts.flow.count"))

        carbon_b.wait_for(lambda pts: got() >= traffic.sent, 10)
        assert total(carbon_b, "stats_counts.flow.count") > 0
        assert got() == traffic.sent > 100, lines[-20:]


def test_sigterm_during_a_slow_boot_is_acted_on_at_once(tmp_path):
    conf = write_plugin(tmp_path, "import time\ntime.sleep(60)\n")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port,
                                 "collectd_python_config": str(conf)})
        bucky.start(wait_ready=False)
        deadline = time.monotonic() + 20
        while "bucky: python_plugins" not in bucky.child_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "bucky: python_plugins" in bucky.child_pids()
        time.sleep(0.5)  # the plugin host is inside its import
        started = time.monotonic()
        assert bucky.stop(timeout=10) == 0
        # Neither BOOT_TIMEOUT (60 s) nor process_join_timeout (5 s here) was waited for.
        assert time.monotonic() - started < 4.5
        assert not any("bucky started" in ln for ln in bucky.stderr_lines)


def test_sigterm_during_a_reload_whose_new_child_boots_slowly(tmp_path):
    conf = write_plugin(tmp_path, "import time\ntime.sleep(60)\n")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port}).start()
        with Traffic(bucky) as traffic:
            bucky.config_path.write_text(bucky.config_path.read_text()
                                         + f"collectd_python_config = {str(conf)!r}\n")
            bucky.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while ("bucky: python_plugins" not in bucky.child_pids()
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            time.sleep(0.3)
        started = time.monotonic()
        assert bucky.stop(timeout=15) == 0
        assert time.monotonic() - started < 4.5  # process_join_timeout is 5 s
        assert not any("configuration reloaded" in ln for ln in bucky.stderr_lines)
        # What was sent reached carbon: the old statsd handed its counts to the new one, which
        # flushed them at the stop.
        assert carbon.wait_for(
            lambda pts: total(carbon, "stats_counts.flow.count") >= traffic.sent, 10)
        assert total(carbon, "stats_counts.flow.count") == traffic.sent


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        address = f"@bucky-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + address[1:])
    sock.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield sock
    sock.close()


def _next(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def _until(sock: socket.socket, key: str) -> dict[str, str]:
    for _ in range(20):
        msg = _next(sock)
        if key in msg:
            return msg
    raise AssertionError(f"no {key}")


def test_sd_notify_ready_reloading_stopping(tmp_path, notify_socket):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port})
        bucky.start(wait_ready=False)
        try:
            ready = _until(notify_socket, "READY")
            assert ready["READY"] == "1"
            bucky.wait_stderr(lambda ln: "bucky started" in ln, 5)  # logged before READY=1
            assert ready["STATUS"].startswith("running: ")
            bucky.send_signal(signal.SIGHUP)
            reloading = _next(notify_socket)
            assert reloading["RELOADING"] == "1"
            usec = int(reloading["MONOTONIC_USEC"])
            assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 30_000_000
            assert _until(notify_socket, "READY")["READY"] == "1"
            bucky.wait_stderr(lambda ln: "configuration reloaded" in ln, 5)
            # A refused reload is followed by READY=1 too (systemd waits for it).
            bucky.config_path.write_text(bucky.config_path.read_text() + "statsd_port = 'x'\n")
            bucky.send_signal(signal.SIGHUP)
            assert "RELOADING" in _next(notify_socket)
            after = _until(notify_socket, "READY")
            assert "the last reload failed" in after["STATUS"]
        finally:
            code = bucky.stop()
        assert code == 0
        assert _until(notify_socket, "STOPPING")["STOPPING"] == "1"


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.mark.parametrize("setting, journal, stamped", [
    ("auto", False, True), ("auto", True, False), (True, True, True), (False, False, False)])
def test_log_timestamps(tmp_path, monkeypatch, setting, journal, stamped):
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port,
                                 "log_timestamps": setting}).start()
        assert bucky.stop() == 0
    lines = [ln for ln in bucky.stderr_lines if "[INFO]" in ln]
    assert lines and all(bool(TIMESTAMP.match(ln)) is stamped for ln in lines), lines
    if not stamped:
        assert all(ln.startswith("[INFO] ") for ln in lines)


def test_plugin_shutdown_callbacks_run_on_reload_too(tmp_path):
    marker = tmp_path / "shutdowns"
    conf = write_plugin(tmp_path, (
        "import collectd\n"
        "def shutdown():\n"
        f"    with open({str(marker)!r}, 'a') as fh:\n"
        "        fh.write('x')\n"
        "collectd.register_shutdown(shutdown)\n"), "closer")
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon.port,
                                 "collectd_python_config": str(conf)}).start()
        try:
            bucky.config_path.write_text(bucky.config_path.read_text()
                                         + "statsd_flush_time = 0.7\n")
            bucky.send_signal(signal.SIGHUP)
            bucky.wait_stderr(lambda ln: "configuration reloaded" in ln, 30)
            assert marker.read_text() == "x"  # the old plugin host was closed
        finally:
            assert bucky.stop() == 0
        assert marker.read_text() == "xx"


FAIL_OUTPUT = '''\
import os

if os.environ.get("BUCKY_TEST_FAIL_GRAPHITE_PORT"):
    from bucky.daemon import children
    from bucky.errors import BuckyError

    _real = children.RUNNERS["output"]

    def _runner(spec, flags):
        if spec.cfg.graphite_port == int(os.environ["BUCKY_TEST_FAIL_GRAPHITE_PORT"]):
            raise BuckyError("refusing to start (test)")
        return _real(spec, flags)

    children.RUNNERS["output"] = _runner
'''


def test_a_new_output_that_cannot_start_cancels_the_reload(tmp_path, monkeypatch):
    """What no check can foresee (an output failing as it starts) cancels the reload: the old
    processes never stopped, nothing is lost."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAIL_OUTPUT)
    with FakeCarbon() as carbon_a, FakeCarbon() as carbon_b:
        monkeypatch.setenv("BUCKY_TEST_FAIL_GRAPHITE_PORT", str(carbon_b.port))
        bucky = Bucky(tmp_path, {**OPTS, "graphite_port": carbon_a.port},
                      python_path=(str(hooks),)).start()
        try:
            before = data_pids(bucky)
            with Traffic(bucky) as traffic:
                time.sleep(0.3)
                bucky.config_path.write_text(bucky.config_path.read_text()
                                             + f"graphite_port = {carbon_b.port}\n")
                bucky.send_signal(signal.SIGHUP)
                line = bucky.wait_stderr(lambda ln: "reload failed" in ln, 30)
                assert "graphite failed to start: refusing to start (test)" in line
                time.sleep(0.5)
            assert bucky.proc.poll() is None
            assert data_pids(bucky) == before
        finally:
            assert bucky.stop() == 0
        assert carbon_a.wait_for(
            lambda pts: total(carbon_a, "stats_counts.flow.count") >= traffic.sent, 10)
        assert total(carbon_a, "stats_counts.flow.count") == traffic.sent > 50
        assert carbon_b.points == []
