"""Run the real daemon (`python -m bucky`) as a subprocess on loopback with free ports.

Used by the integration tests: writes a config file, starts bucky, collects stdout (the `--debug`
output) and stderr in threads, and stops it with a signal. Every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def carbon_ports() -> dict[str, int]:
    """The carbon input's ports: a line port free for TCP and UDP, and a pickle port."""
    for _ in range(50):
        line = free_port(socket.SOCK_STREAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", line))
        except OSError:
            continue
        pickle_port = free_port(socket.SOCK_STREAM)
        if pickle_port != line:
            return {"carbon_line_port": line, "carbon_pickle_port": pickle_port}
    raise AssertionError("no free port pair")


def free_ports() -> dict[str, int]:
    return {
        "statsd_port": free_port(),
        "collectd_port": free_port(),
        "metricsd_port": free_port(),
        "http_port": free_port(socket.SOCK_STREAM),  # never the default 8127: tests run in parallel
    }


class Bucky:
    def __init__(self, tmp_path: Path, options: dict | None = None, *, args: tuple = (),
                 extra_config: str = "", debug: bool = False,
                 python_path: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        self.python_path = python_path  # directories before the tree on PYTHONPATH
        self.env = env or {}  # extra environment variables
        self.ports = free_ports()
        opts = {
            "directory": str(tmp_path / "state"),
            "self_metrics_interval": 0,
            "process_join_timeout": 5.0,
            **self.ports,
        }
        opts.update(options or {})
        for key in ("statsd_port", "collectd_port", "metricsd_port", "http_port"):
            self.ports[key] = opts[key]
        self.options = opts
        self.config_path = tmp_path / "bucky_config.py"
        lines = [f"{k} = {v!r}" for k, v in opts.items()]
        self.config_path.write_text("\n".join(lines) + "\n" + extra_config)
        self.args = list(args) + (["--debug"] if debug else [])
        self.proc: subprocess.Popen | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()

    def start(self, wait_ready: bool = True, timeout: float = 20.0) -> Bucky:
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([*self.python_path, str(ROOT)]), **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bucky", *self.args, str(self.config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=env, cwd=str(self.tmp_path), text=True, errors="replace", start_new_session=True,
        )
        for stream, sink in ((self.proc.stdout, self.stdout_lines),
                             (self.proc.stderr, self.stderr_lines)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        if wait_ready:
            self.wait_stderr(lambda line: "bucky started" in line, timeout)
        return self

    def _pump(self, stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            with self._cond:
                sink.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_stderr(self, pred: Callable[[str], bool], timeout: float = 20.0) -> str:
        return self._wait(self.stderr_lines, pred, timeout)

    def wait_stdout(self, pred: Callable[[str], bool], timeout: float = 20.0) -> str:
        return self._wait(self.stdout_lines, pred, timeout)

    def _wait(self, lines: list[str], pred: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in lines[seen:]:
                    if pred(line):
                        return line
                seen = len(lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(self.stderr_lines[-40:])
                    raise AssertionError(f"timed out after {timeout} s; stderr:\n{tail}")
                if self.proc is not None and self.proc.poll() is not None and remaining > 0.5:
                    self._cond.wait(0.3)  # let the pump threads drain the pipes
                    if not any(pred(x) for x in lines[seen:]):
                        raise AssertionError(
                            f"bucky exited with {self.proc.returncode}; stderr:\n"
                            + "\n".join(self.stderr_lines[-40:])
                        )
                self._cond.wait(min(remaining, 0.2))

    def metrics(self) -> dict[str, list[tuple[float, float]]]:
        """Parsed `--debug` stdout lines: name -> [(value, timestamp), ...]."""
        out: dict[str, list[tuple[float, float]]] = {}
        with self._cond:
            lines = list(self.stdout_lines)
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                try:
                    out.setdefault(parts[0], []).append((float(parts[1]), float(parts[2])))
                except ValueError:
                    continue
        return out

    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET from the status server (http_port): (status, body)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.ports["http_port"], timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def send_udp(self, port_key: str, data: bytes, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(data, (host, self.ports[port_key]))

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"bucky did not stop within {timeout} s") from None
        time.sleep(0.05)  # the pump threads finish reading the closed pipes
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(os.getpgid(self.proc.pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait(5)

    def child_pids(self) -> dict[str, int]:
        """Process title -> pid of bucky's children (from /proc)."""
        assert self.proc is not None
        out = {}
        for pid in _ppid_map().get(self.proc.pid, []):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    title = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            out[title] = pid
        return out


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (bounded: a process tree is finite, /proc is a snapshot)."""
    children = _ppid_map()
    out, stack = [root], [root]
    while stack and len(out) < 10_000:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def wait_until(pred, timeout: float = 20.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `pred()` until it is truthy or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    return last
