"""A throwaway real carbon-cache (Debian's graphite-carbon) for integration tests.

Follows shared/reference/carbon-recipe.md: a private carbon.conf in a temporary directory, line
and pickle receivers on free 127.0.0.1 ports, `--nodaemon`, readiness by polling the ports with a
deadline, stop by the PID in its pidfile. `fetch()` reads the whisper files directly.

Requirements: /usr/bin/carbon-cache (apt: graphite-carbon) and the `whisper` module (apt:
python3-whisper). The tests may run on another interpreter than Debian's python3 (CI uses the
project's Python), so when `import whisper` fails the module file is loaded from Debian's
dist-packages by path: one pure-Python file, without putting the rest of dist-packages on
sys.path. Missing pieces skip the test with the reason.

`CarbonCache(directory, instance="a")` runs one instance of a cluster the way
scale-and-operations.md describes it: the carbon.conf gets a `[cache:a]` section with that
instance's receiver and cache-query ports and data directory, and carbon-cache is started with
`--instance=a`. `start_all` starts several at once (each takes one to two seconds to listen).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType

from peers import missing

CARBON_CACHE = "/usr/bin/carbon-cache"
DEBIAN_WHISPER = "/usr/lib/python3/dist-packages/whisper.py"

CARBON_CONF = """\
[cache]
STORAGE_DIR    = {d}/storage/
LOCAL_DATA_DIR = {d}/storage/whisper/
WHITELISTS_DIR = {d}/storage/lists/
CONF_DIR       = {d}/conf/
LOG_DIR        = {d}/log/
PID_DIR        = {d}/run/
DATABASE = whisper
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 500
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle_port}
USE_INSECURE_UNPICKLER = False
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query_port}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = True
LOG_LISTENER_CONNECTIONS = True
ENABLE_TAGS = False
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = False
"""

INSTANCE_SECTION = """
[cache:{instance}]
LINE_RECEIVER_PORT = {line_port}
PICKLE_RECEIVER_PORT = {pickle_port}
CACHE_QUERY_PORT = {query_port}
LOCAL_DATA_DIR = {d}/storage/whisper/
"""

STORAGE_SCHEMAS = """\
[everything_1s]
pattern = .*
retentions = 1s:1h
"""

STORAGE_AGGREGATION = """\
[default]
pattern = .*
xFilesFactor = 0
aggregationMethod = average
"""


def load_whisper() -> ModuleType:
    """The whisper module: installed, or Debian's file loaded by path; skips if neither."""
    try:
        import whisper  # type: ignore[import-not-found]

        return whisper
    except ImportError:
        pass
    if not os.path.exists(DEBIAN_WHISPER):
        missing("whisper is not available (apt-get install python3-whisper)")
    spec = importlib.util.spec_from_file_location("whisper", DEBIAN_WHISPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class CarbonCache:
    def __init__(self, directory: Path, instance: str | None = None) -> None:
        if not os.access(CARBON_CACHE, os.X_OK):
            missing(f"{CARBON_CACHE} is missing (apt-get install graphite-carbon)")
        self.whisper = load_whisper()
        self.dir = Path(directory)
        self.instance = instance
        self.line_port, self.pickle_port, self.query_port = _free_ports(3)
        name = "carbon-cache" if instance is None else f"carbon-cache-{instance}"
        self.pidfile = self.dir / "run" / f"{name}.pid"
        self.output = self.dir / "carbon.out"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> CarbonCache:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start carbon-cache without waiting for it to listen (see `wait_ready`)."""
        d = self.dir
        for sub in ("conf", "storage/whisper", "storage/lists", "log", "run"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        ports = dict(d=d, line_port=self.line_port, pickle_port=self.pickle_port,
                     query_port=self.query_port)
        conf = CARBON_CONF.format(**ports)
        args = [CARBON_CACHE, f"--config={d}/conf/carbon.conf", "--nodaemon", "--logfile=-",
                f"--pidfile={self.pidfile}"]
        if self.instance is not None:
            conf += INSTANCE_SECTION.format(instance=self.instance, **ports)
            args.append(f"--instance={self.instance}")
        (d / "conf" / "carbon.conf").write_text(conf)
        (d / "conf" / "storage-schemas.conf").write_text(STORAGE_SCHEMAS)
        (d / "conf" / "storage-aggregation.conf").write_text(STORAGE_AGGREGATION)
        with open(self.output, "wb") as out:
            self._proc = subprocess.Popen(
                args + ["start"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d,
            )

    def wait_ready(self, timeout: float = 30.0) -> CarbonCache:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while not (_listening(self.line_port) and _listening(self.pickle_port)):
            if self._proc.poll() is not None:
                raise RuntimeError(f"carbon-cache exited ({self._proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"carbon-cache not listening after {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pid = proc.pid
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            pass
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stored_paths(self) -> set[str]:
        """Every metric this carbon-cache has a whisper file for."""
        root = self.dir / "storage" / "whisper"
        return {str(f.relative_to(root))[:-4].replace("/", ".") for f in root.rglob("*.wsp")}

    def wsp_path(self, path: str) -> Path:
        return self.dir / "storage" / "whisper" / (path.replace(".", "/") + ".wsp")

    def fetch(self, path: str, from_time: int, until_time: int) -> list[tuple[int, float]]:
        """The points stored for `path` between the two times: [(timestamp, value)], no gaps."""
        wsp = self.wsp_path(path)
        if not wsp.exists():
            return []
        try:
            (start, _end, step), values = self.whisper.fetch(str(wsp), from_time, until_time)
        except Exception:  # a file being created can be briefly unreadable
            return []
        return [(start + i * step, v) for i, v in enumerate(values) if v is not None]

    def wait_for_value(self, path: str, timestamp: int, timeout: float = 10.0
                       ) -> float | None:
        """Poll until the point at `timestamp` is readable; its value, or None at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for ts, value in self.fetch(path, timestamp - 5, timestamp + 5):
                if ts == timestamp:
                    return value
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def __enter__(self) -> CarbonCache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_all(caches: list[CarbonCache], timeout: float = 30.0) -> list[CarbonCache]:
    """Launch every carbon-cache first, then wait for each (they start in parallel)."""
    try:
        for cache in caches:
            cache.launch()
        for cache in caches:
            cache.wait_ready(timeout)
    except BaseException:
        for cache in caches:
            cache.stop()
        raise
    return caches
