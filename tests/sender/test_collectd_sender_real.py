"""The sender against Debian's real collectd: the classic examples end up in collectd's CSV files.

Each test starts `collectd -f -C <tmp conf>` with only the network plugin (listening on
127.0.0.1 at a free port, SecurityLevel None/Sign/Encrypt with an AuthFile) and the csv plugin
(StoreRates false) writing to a tmp DataDir, runs an example or the library against it, and
reads the CSV files back. Everything lives in tmp, so it runs as any user. Skipped when collectd
or its plugins are not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from buckyproc import free_port  # tests/ helper
from peers import missing

from bucky.sender import collectd

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COLLECTD = Path("/usr/sbin/collectd")
PLUGIN_DIR = Path("/usr/lib/collectd")
TYPES_DB = Path("/usr/share/collectd/types.db")
MISSING = [
    str(path)
    for path in (COLLECTD, PLUGIN_DIR / "network.so", PLUGIN_DIR / "csv.so", TYPES_DB)
    if not path.exists()
]
if MISSING:
    missing(f"Debian's collectd (package collectd-core) is not installed: missing "
            f"{', '.join(MISSING)}")

USERNAME = "appsender"
PASSWORD = "S3cret: with spaces"  # a colon and spaces: the AuthFile keeps all after ": "
INTERVAL = 0.4  # seconds between sends in the examples
RUN_SECONDS = 2.0  # how long each example records


def _poll(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # polling with a deadline, not synchronising by sleeping


@dataclass
class Collectd:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def csv_files(self, pattern: str) -> list[Path]:
        """CSV files of any host: DataDir/<host>/<plugin[-instance]>/<type-instance>-<date>."""
        return sorted(self.data_dir.glob(f"*/{pattern}"))

    def csv_sum(self, pattern: str) -> float:
        return sum(value for _, value in self.csv_rows(pattern))

    def csv_rows(self, pattern: str) -> list[tuple[float, float]]:
        rows = []
        for path in self.csv_files(pattern):
            for line in path.read_text().splitlines()[1:]:  # first line: "epoch,value"
                if line.count(",") == 1:  # a line being written right now may be partial
                    epoch, value = line.split(",")
                    rows.append((float(epoch), float(value)))
        return rows


def _config(root: Path, port: int, security: str) -> str:
    listen = f'SecurityLevel {security}\n    AuthFile "{root / "auth"}"'
    if security == "None":
        listen = "SecurityLevel None"
    return f"""\
Hostname "collectd-under-test"
FQDNLookup false
BaseDir "{root}"
PIDFile "{root / "collectd.pid"}"
PluginDir "{PLUGIN_DIR}"
TypesDB "{TYPES_DB}"
Interval 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{root / "collectd.log"}"
  Timestamp true
</Plugin>

LoadPlugin network
<Plugin network>
  <Listen "127.0.0.1" "{port}">
    {listen}
  </Listen>
</Plugin>

LoadPlugin csv
<Plugin csv>
  DataDir "{root / "data"}"
  StoreRates false
</Plugin>
"""


@pytest.fixture
def start_collectd(tmp_path: Path) -> Iterator[Callable[[str], Collectd]]:
    started: list[Collectd] = []

    def start(security: str = "None") -> Collectd:
        root = tmp_path / f"collectd-{len(started)}"
        (root / "data").mkdir(parents=True)
        (root / "auth").write_text(f"# user: password\n{USERNAME}: {PASSWORD}\n")
        port = free_port()
        conf = root / "collectd.conf"
        conf.write_text(_config(root, port, security))
        process = subprocess.Popen(
            [str(COLLECTD), "-f", "-C", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Collectd(process, port, root / "data", root / "collectd.log")
        started.append(server)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"collectd exited with {process.returncode}:\n{server.log_text()}"
                )
            return "Initialization complete" in server.log_text()

        _poll(ready, 20, "collectd to start")
        return server

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _run_example(
    name: str, server: Collectd, security: str = "none", password: str = PASSWORD
) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "COLLECTD_SECURITY_LEVEL": security,
        "COLLECTD_USERNAME": USERNAME,
        "COLLECTD_PASSWORD": password,
    }
    args = ["127.0.0.1", str(server.port), str(INTERVAL), str(RUN_SECONDS)]
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_basic_arrived(server: Collectd, recorded: dict) -> None:
    """Every sum reaches collectd, including what the exit hook sent last."""
    expected = {
        "gauge-some_category-some_counter-*": recorded["some_counter"],
        "gauge-coin_stats-heads-flips-*": recorded["heads"],
        "gauge-coin_stats-tails-flips-*": recorded["tails"],
        "gauge-coin_stats-flips-*": recorded["heads"] + recorded["tails"],
    }
    assert recorded["some_counter"] > 0

    def all_arrived() -> bool:
        return all(server.csv_sum(f"any/{p}") == total for p, total in expected.items())

    try:
        _poll(all_arrived, 15, "the sums in collectd's CSV files")
    except AssertionError:
        got = {p: server.csv_sum(f"any/{p}") for p in expected}
        raise AssertionError(f"expected {expected}, got {got}\n{server.log_text()}") from None
    another = server.csv_sum("any/gauge-some_category-another_stat-*")
    rows = len(server.csv_rows("any/gauge-some_category-another_stat-*"))
    assert another == pytest.approx(recorded["another_stat"], abs=1e-6 * rows)  # CSV: 6 decimals
    # Per interval too: the base count is the sum of the specific ones.
    heads = dict(server.csv_rows("any/gauge-coin_stats-heads-flips-*"))
    tails = dict(server.csv_rows("any/gauge-coin_stats-tails-flips-*"))
    for when, flips in server.csv_rows("any/gauge-coin_stats-flips-*"):
        assert flips == heads.get(when, 0.0) + tails.get(when, 0.0)


def test_basic_example_reaches_collectd(start_collectd):
    server = start_collectd("None")
    recorded = _run_example("basic.py", server)
    _assert_basic_arrived(server, recorded)


def test_primes_example_reaches_collectd(start_collectd):
    server = start_collectd("None")
    recorded = _run_example("primes.py", server)
    producer = {k: recorded[k] for k in ("too_small", "too_big", "just_right")}
    consumer = recorded["prime"] + recorded["composite"]

    def all_arrived() -> bool:
        return (
            server.csv_files("any/gauge-queue-size-*")
            and all(server.csv_sum(f"any/gauge-producer-{k}-*") == n for k, n in producer.items())
            and server.csv_sum("any/gauge-consumer-count-*") == consumer
            and server.csv_sum("any/gauge-consumer-prime-count-*") == recorded["prime"]
        )

    assert sum(producer.values()) > 0
    _poll(all_arrived, 15, "the primes example's sums in collectd's CSV files")


@pytest.mark.parametrize("security", ["Sign", "Encrypt"])
def test_signed_and_encrypted_data_reach_collectd(start_collectd, security):
    server = start_collectd(security)
    recorded = _run_example("basic.py", server, security=security.lower())
    _assert_basic_arrived(server, recorded)


def _send_once(server: Collectd, plugin_inst: str, level: str, password: str | None) -> None:
    reporter = collectd.Reporter(interval=10)
    conn = collectd.Connection(
        "bucky-test",
        "127.0.0.1",
        server.port,
        plugin_inst,
        security_level=level,
        username=USERNAME if password else None,
        password=password,
        reporter=reporter,
    )
    conn.probe.record(n=1)
    assert reporter.flush() == 1
    reporter.close()


@pytest.mark.parametrize(
    ("security", "level", "password"),
    [
        ("Sign", "sign", "wrong password"),
        ("Encrypt", "encrypt", "wrong password"),
        ("Sign", "none", None),  # unsigned data to a Sign listener
        ("Encrypt", "sign", PASSWORD),  # signed but not encrypted
    ],
)
def test_rejected_data_never_arrives(start_collectd, security, level, password):
    server = start_collectd(security)
    _send_once(server, "rejected", level, password)
    # collectd handles datagrams in order: once a later good one is stored, the bad one was seen.
    _send_once(server, "accepted", security.lower(), PASSWORD)
    _poll(lambda: server.csv_files("any-accepted/gauge-probe-n-*"), 15, "the accepted datagram")
    assert server.csv_files("any-rejected/*") == []
    assert not list(server.data_dir.glob("*/any-rejected"))
