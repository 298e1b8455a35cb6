"""The command line: options, config errors and bind errors end with one clear line."""

import socket
import subprocess
import sys

import pytest
from buckyproc import ROOT, free_port


def run_bucky(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "bucky", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_version_and_help():
    out = run_bucky("--version")
    assert out.returncode == 0 and out.stdout.startswith("bucky 3.")
    helptext = run_bucky("-h").stdout
    for option in ("--debug", "--metricsd-ip", "--metricsd-port", "--disable-metricsd",
                   "--collectd-ip", "--collectd-port", "--collectd-types", "--disable-collectd",
                   "--statsd-ip", "--statsd-port", "--disable-statsd", "--graphite-ip",
                   "--graphite-port", "--disable-graphite", "--full-trace", "--log-level",
                   "--nice", "--uid", "--gid", "--version", "--http-ip", "--http-port",
                   "--disable-http"):
        assert option in helptext


@pytest.mark.parametrize("text,expected", [
    ("statsd_port = 'abc'\n", "statsd_port: expected a port number 1-65535, got 'abc'"),
    ("statsd_port = 70000\n", "statsd_port: expected a port number 1-65535, got 70000"),
    ("statsd_port = 8125\nthis line is garbage\n", ":2: invalid syntax"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, text, expected):
    path = tmp_path / "config.py"
    path.write_text(text)
    out = run_bucky(str(path))
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_config_file(tmp_path):
    out = run_bucky(str(tmp_path / "missing.py"))
    assert out.returncode == 2
    assert "cannot read config file: No such file or directory" in out.stderr


def test_bad_command_line_value():
    out = run_bucky("--statsd-port", "x")
    assert out.returncode == 2
    assert "command line: statsd_port: expected a port number 1-65535, got 'x'" in out.stderr


@pytest.mark.parametrize("reuseaddr", [False, True])
def test_port_in_use_exits_1(tmp_path, reuseaddr):
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuseaddr:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    try:
        out = run_bucky("--statsd-port", str(port), "--disable-collectd", "--disable-metricsd",
                        "--debug")
    finally:
        holder.close()
    assert out.returncode == 1
    assert out.stderr.strip().endswith(
        f"cannot bind UDP 127.0.0.1:{port} for statsd: Address already in use")
    assert "Traceback" not in out.stderr


def test_sentry_options_reach_sentry_sdk(monkeypatch) -> None:
    """sentry_auto_log_stacks is Bucky 2's option: it becomes sentry-sdk's attach_stacktrace."""
    import types

    from bucky.cli import _init_sentry
    from bucky.config import make_config

    calls: list[dict] = []
    sdk = types.ModuleType("sentry_sdk")
    sdk.init = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    integrations = types.ModuleType("sentry_sdk.integrations")
    logging_mod = types.ModuleType("sentry_sdk.integrations.logging")
    logging_mod.LoggingIntegration = lambda event_level: ("logging", event_level)  # type: ignore
    for name, module in (("sentry_sdk", sdk), ("sentry_sdk.integrations", integrations),
                         ("sentry_sdk.integrations.logging", logging_mod)):
        monkeypatch.setitem(sys.modules, name, module)
    cfg = make_config(sentry_enabled=True, sentry_dsn="https://k@sentry.invalid/1",
                      sentry_auto_log_stacks=True, sentry_log_level="ERROR")
    _init_sentry(cfg)
    (call,) = calls
    assert call["dsn"] == "https://k@sentry.invalid/1" and call["attach_stacktrace"] is True
    assert call["integrations"] == [("logging", 40)]


def test_http_options_on_the_command_line():
    out = run_bucky("--check", "-v", "--http-ip", "127.0.0.2", "--http-port", "9127")
    assert out.returncode == 0, out.stderr
    assert "http_ip = '127.0.0.2'" in out.stdout and "http_port = 9127" in out.stdout
    assert "# socket http: TCP 127.0.0.2:9127\n" in out.stdout  # chosen: must bind
    out = run_bucky("--check", "-v", "--disable-http")
    assert out.returncode == 0, out.stderr
    assert "http_enabled = False" in out.stdout and "process http" not in out.stdout
    out = run_bucky("--check", "-v")
    assert "# socket http: TCP 127.0.0.1:8127 (optional: skipped with a warning if taken)" \
        in out.stdout
    assert "# process http: http (auxiliary)" in out.stdout


def test_an_http_port_the_operator_chose_that_is_taken_exits_1():
    """Issue 19: only the default status port may be taken (a warning); a chosen one is an
    error at start-up, like every other port."""
    port = free_port(socket.SOCK_STREAM)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        out = run_bucky("--http-port", str(port), "--disable-collectd", "--disable-metricsd",
                        "--statsd-port", str(free_port()), "--debug")
    finally:
        holder.close()
    assert out.returncode == 1
    assert out.stderr.strip().endswith(
        f"cannot bind TCP 127.0.0.1:{port} for the status server: Address already in use")
