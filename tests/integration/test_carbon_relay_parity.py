"""The carbon input accepts what carbon-relay accepts: the same plaintext lines (TCP and UDP) and
pickle frames, sent to a real Debian carbon-relay and to Bucky, come out as the same points."""

from __future__ import annotations

import math
import os
import pickle
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from buckyproc import Bucky, carbon_ports
from fakecarbon import FakeCarbon
from peers import missing

pytestmark = pytest.mark.integration

CARBON_RELAY = "/usr/bin/carbon-relay"

RELAY_CONF = """\
[cache]
STORAGE_DIR    = {d}/storage/
LOCAL_DATA_DIR = {d}/storage/whisper/
WHITELISTS_DIR = {d}/storage/lists/
CONF_DIR       = {d}/conf/
LOG_DIR        = {d}/log/
PID_DIR        = {d}/run/
USER =

[relay]
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
ENABLE_UDP_LISTENER = True
UDP_RECEIVER_INTERFACE = 127.0.0.1
UDP_RECEIVER_PORT = {line}
RELAY_METHOD = consistent-hashing
DESTINATIONS = 127.0.0.1:{dest}
DESTINATION_PROTOCOL = pickle
USE_INSECURE_UNPICKLER = False
USE_FLOW_CONTROL = True
MAX_QUEUE_SIZE = 100000
"""

TCP_LINES = [
    "a.plain 1 1700000000", "a.tabs\t2\t1700000001", "   a.spaces   3   1700000002   ",
    "a.crlf 4 1700000003\r", "a.exp 1e3 1700000004", "a.nan nan 1700000005",
    "a.inf inf 1700000006", "a.neginf -inf 1700000007", "a.float.ts -1.5 1700000008.7",
    "a.now 1 -1", "a.hex 0x10 1700000009", "a.underscore 1_000 1700000010",
    "a.plus +5 1700000011", "a.dot .5 1700000012", "a.trailing 5. 1700000013",
    "a.arabic \u0661\u0662 1700000014", "a.sci.ts 1 1.7e9", "a.unicod\u00e9 1 1700000015",
    "bad.value x 1700000016", "only.two 1", "four fields here 1", "",
    "a.vt\x0b7 1700000017", "a.nbsp\u00a08 1700000018", "a.fs\x1c9 1700000019",
    "a.big 123456789012345678901234567890 1700000020", "zz.end.tcp 1 1700000999",
]
UDP_DATAGRAM = ("u.a 1 1700000100\nu.b 2 1700000101\x1cu.c 3 1700000102\r\nu.d 4 1700000103"
                "\u2028u.e 5 1700000104\n\nbad udp line\nzz.end.udp 1 1700000999\n")
PICKLE_POINTS = [
    ("p.a", (1700000200, 1)), ("p.b", (1700000201.5, 2.5)), ("p.str", ("1700000202", "3")),
    "junk", ("p.bad", ("x", 1)), ("p.nan", (1700000203, float("nan"))),
    ("p.bool", (1700000204, True)), ("p.list", [1700000205, 6]), ("p.short", (1,)),
    ("p.unicod\u00e9", (1700000206, 7)),
]
SENTINELS = {"zz.end.tcp", "zz.end.udp", "zz.end.pickle"}


def frame(points: list) -> bytes:
    payload = pickle.dumps(points, protocol=2)
    return struct.pack("!L", len(payload)) + payload


def send_corpus(line_port: int, pickle_port: int) -> None:
    with socket.create_connection(("127.0.0.1", line_port)) as tcp:
        tcp.sendall("".join(line + "\n" for line in TCP_LINES).encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(UDP_DATAGRAM.encode(), ("127.0.0.1", line_port))
    with socket.create_connection(("127.0.0.1", pickle_port)) as pk:
        pk.sendall(frame(PICKLE_POINTS) + frame([("zz.end.pickle", (1700000999, 1))]))


def normalized(points: list) -> set:
    """(path, value, whole-second timestamp): Bucky's outputs write whole seconds (whisper
    floors them anyway) where carbon-relay forwards a fractional timestamp as it came."""
    out = set()
    for path, value, timestamp in points:
        if path == "a.now":
            out.add((path, float(value), "now"))
        else:
            out.add((path, float(value), int(float(timestamp))))
    return out


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_carbon_relay(d: Path, dest_port: int) -> tuple[subprocess.Popen, int, int]:
    ports = carbon_ports()
    line, pickle_port = ports["carbon_line_port"], ports["carbon_pickle_port"]
    for sub in ("conf", "log", "run", "storage"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "conf" / "carbon.conf"
    conf.write_text(RELAY_CONF.format(d=d, line=line, pickle=pickle_port, dest=dest_port))
    (d / "conf" / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
    out = open(d / "relay.out", "wb")
    proc = subprocess.Popen([CARBON_RELAY, f"--config={conf}", "--nodaemon", "--logfile=-",
                             f"--pidfile={d}/run/relay.pid", "start"], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)
    deadline = time.monotonic() + 30
    while not (listening(line) and listening(pickle_port)):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError((d / "relay.out").read_text()[-3000:])
        time.sleep(0.1)
    return proc, line, pickle_port


def test_bucky_accepts_what_carbon_relay_accepts(tmp_path):
    if not os.access(CARBON_RELAY, os.X_OK):
        missing(f"{CARBON_RELAY} is missing (apt-get install graphite-carbon)")
    with FakeCarbon("pickle") as behind_relay, FakeCarbon("pickle") as behind_bucky:
        relay, line, pickle_port = start_carbon_relay(tmp_path / "relay", behind_relay.port)
        (tmp_path / "bucky").mkdir()
        bucky = Bucky(tmp_path / "bucky", {"carbon_enabled": True, **carbon_ports(),
                                           "graphite_port": behind_bucky.port,
                                           "graphite_pickle_enabled": True}).start()
        try:
            assert behind_relay.wait_for(lambda _: behind_relay.connections > 0, 20)
            send_corpus(line, pickle_port)
            send_corpus(bucky.options["carbon_line_port"], bucky.options["carbon_pickle_port"])
            for carbon in (behind_relay, behind_bucky):
                assert carbon.wait_for(lambda pts: SENTINELS <= {p[0] for p in pts}, 20)
            time.sleep(0.5)
            relayed, ours = normalized(behind_relay.points), normalized(behind_bucky.points)
            assert ours == relayed, (sorted(ours - relayed), sorted(relayed - ours))
            # What the corpus shows, in words:
            paths = {p for p, _, _ in ours}
            assert {"a.tabs", "a.crlf", "a.underscore", "a.arabic", "u.c", "u.e", "p.str",
                    "p.bool", "p.list", "a.unicod\u00e9"} <= paths
            assert not {"a.nan", "p.nan", "a.hex", "bad.value", "p.bad", "p.short"} & paths
            assert any(math.isinf(v) for p, v, _ in ours if p == "a.inf")
        finally:
            assert bucky.stop() == 0
            relay.terminate()
            try:
                relay.wait(15)
            except subprocess.TimeoutExpired:
                relay.kill()
