"""The carbon input through the daemon: Graphite plaintext over TCP and UDP and pickle over TCP,
relayed to a fake carbon with paths and timestamps unchanged (name rules do not apply); clients
that break the framing are disconnected while a good client keeps flowing; carbon's own client
encoders (Debian graphite-carbon) are understood."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import subprocess
import textwrap
import time

import pytest
from buckyproc import Bucky, carbon_ports
from fakecarbon import FakeCarbon
from peers import missing

pytestmark = pytest.mark.integration

TS = 1_700_000_000
DEBIAN_PYTHON = "/usr/bin/python3"


def start(tmp_path, carbon: FakeCarbon, **options) -> Bucky:
    opts = {"carbon_enabled": True, "graphite_port": carbon.port, **carbon_ports(),
            # Bucky 2 name rules that would change these paths if they applied:
            "name_prefix": "pre", "name_postfix": "post", "name_strip_duplicates": True}
    opts.update(options)
    return Bucky(tmp_path, opts).start()


def frame(points: list) -> bytes:
    payload = pickle.dumps(points, protocol=2)
    return struct.pack("!L", len(payload)) + payload


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the other side closed (EOF or reset); False if still open at the deadline."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


@pytest.mark.parametrize("mode", ["plaintext", "pickle"])
def test_plaintext_tcp_udp_and_pickle_reach_carbon_unchanged(tmp_path, mode):
    with FakeCarbon(mode) as carbon:
        bucky = start(tmp_path, carbon, graphite_pickle_enabled=(mode == "pickle"))
        try:
            port, pport = bucky.options["carbon_line_port"], bucky.options["carbon_pickle_port"]
            with socket.create_connection(("127.0.0.1", port)) as tcp:
                tcp.sendall(b"servers.web.web.cpu 1.5 1700000000\nbad line\n"
                            b"tcp.int 42 1700000001\r\n")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(b"udp.a.a 7 1700000002\nudp.b -0.25 1700000003\n", ("127.0.0.1", port))
            with socket.create_connection(("127.0.0.1", pport)) as pk:
                pk.sendall(frame([("pickle.x;tag=v", (TS + 4, 3)), ("pickle.y", (TS + 5, 2.5)),
                                  ("pickle with space", (TS + 6, 1))]))
            want = {
                ("servers.web.web.cpu", 1.5, TS), ("tcp.int", 42, TS + 1),
                ("udp.a.a", 7, TS + 2), ("udp.b", -0.25, TS + 3),
                ("pickle.x;tag=v", 3, TS + 4), ("pickle.y", 2.5, TS + 5),
                ("pickle_with_space", 1, TS + 6),  # whitespace would split a plaintext line
            }
            assert carbon.wait_for(lambda pts: want <= set(pts), 15), carbon.points
            rewritten = ("pre.servers", "pre.tcp", "pre.udp", "pre.pickle", "servers.web.cpu")
            assert not [p for p in carbon.points if p[0].startswith(rewritten)]
        finally:
            assert bucky.stop() == 0


def test_bad_clients_are_disconnected_while_a_good_one_keeps_flowing(tmp_path):
    with FakeCarbon() as carbon:
        bucky = start(tmp_path, carbon, self_metrics_interval=1.0, self_metrics_prefix="bucky")
        try:
            port, pport = bucky.options["carbon_line_port"], bucky.options["carbon_pickle_port"]
            good = socket.create_connection(("127.0.0.1", port))
            good_pickle = socket.create_connection(("127.0.0.1", pport))
            sent = 0

            def send_good(n: int) -> None:
                nonlocal sent
                for _ in range(n):
                    good.sendall(b"good.line %d %d\n" % (sent, TS + sent))
                    good_pickle.sendall(frame([("good.pickle", (TS + sent, sent))]))
                    sent += 1

            send_good(20)
            huge = socket.create_connection(("127.0.0.1", pport))
            huge.sendall(struct.pack("!L", 2**31) + b"\x00" * 4096)  # a "2 GiB" frame
            garbage = socket.create_connection(("127.0.0.1", pport))
            garbage.sendall(b"\xff" + os.urandom(8191))
            long_line = socket.create_connection(("127.0.0.1", port))
            long_line.sendall(os.urandom(20000).replace(b"\n", b"x"))
            send_good(20)
            for sock in (huge, garbage, long_line):
                assert closed_by_peer(sock), "a client breaking the framing stays connected"
                sock.close()
            send_good(20)
            good.close()
            good_pickle.close()
            lines = {int(v) for p, v, _ in carbon.points if p == "good.line"}

            def all_good(points: list) -> bool:
                got_lines = {int(v) for p, v, _ in points if p == "good.line"}
                got_pickle = {int(v) for p, v, _ in points if p == "good.pickle"}
                return got_lines == got_pickle == set(range(sent))

            assert carbon.wait_for(all_good, 15), (sorted(lines), sent)
            # Self-metrics are Bucky's own names: the name rules do apply to them.
            frame_metric = "pre.bucky.carbon.disconnected.frame-too-large.post"
            line_metric = "pre.bucky.carbon.disconnected.line-too-long.post"
            assert carbon.wait_for(lambda pts: {frame_metric, line_metric}
                                   <= {p[0] for p in pts if p[1]}, 15)
            disconnects = sum(v for p, v, _ in carbon.points if p == frame_metric)
            assert disconnects == 2  # the 2 GiB prefix and the garbage
        finally:
            assert bucky.stop() == 0


def test_idle_and_trickling_clients_are_closed_and_a_big_number_is_refused(tmp_path):
    """Issue 19: connections that send nothing, or one byte a second, were kept forever (1,024 of
    them refuse every honest client); a value of 400 digits stopped the daemon through the status
    server's tap. With carbon_idle_timeout = 1 s both idle clients are closed, the honest one and
    the status server keep going, and the big value is counted, never relayed."""
    with FakeCarbon() as carbon:
        bucky = start(tmp_path, carbon, carbon_idle_timeout=1.0, self_metrics_interval=1.0,
                      self_metrics_prefix="bucky")
        try:
            port, pport = bucky.options["carbon_line_port"], bucky.options["carbon_pickle_port"]
            silent = socket.create_connection(("127.0.0.1", pport))
            trickle = socket.create_connection(("127.0.0.1", port))
            honest = socket.create_connection(("127.0.0.1", port))
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < 4:
                honest.sendall(b"honest.line %d %d\n" % (sent, TS + sent))
                sent += 1
                try:
                    trickle.sendall(b"x")  # never a newline
                except OSError:
                    pass  # already closed by Bucky
                time.sleep(0.25)
            for sock in (silent, trickle):
                assert closed_by_peer(sock, 5), "an idle client is still connected"
                sock.close()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for _ in range(6):
                    udp.sendto(b"crash.http 1" + b"0" * 400 + b" %d\n" % TS, ("127.0.0.1", port))
            honest.sendall(b"honest.end 1 %d\n" % TS)
            honest.close()
            assert carbon.wait_for(lambda pts: ("honest.end", 1, TS) in pts, 15)
            assert {int(v) for p, v, _ in carbon.points if p == "honest.line"} == set(range(sent))
            idle_metric = "pre.bucky.carbon.tcp.idle_closed.post"
            value_metric = "pre.bucky.carbon.bad_lines.bad-value.post"

            def counted(points: list) -> bool:
                return (sum(v for p, v, _ in points if p == idle_metric) >= 2
                        and sum(v for p, v, _ in points if p == value_metric) == 6)

            assert carbon.wait_for(counted, 15)
            assert not [p for p in carbon.points if p[0] == "crash.http"]
            assert bucky.proc.poll() is None  # nothing stopped
        finally:
            assert bucky.stop() == 0


CARBON_CLIENT = textwrap.dedent("""
    import socket, sys
    from twisted.internet.testing import StringTransport
    from carbon.client import CarbonLineClientProtocol, CarbonPickleClientProtocol
    points = [("carbon.client.a", (1700000000, 1.25)), ("carbon.client.b", (1700000001.0, 2)),
              ("carbon.client.c;dc=x", (1700000002, -3.5))]
    for cls, port, suffix in ((CarbonLineClientProtocol, int(sys.argv[1]), ".line"),
                              (CarbonPickleClientProtocol, int(sys.argv[2]), ".pickle")):
        proto, transport = cls(), StringTransport()
        proto.transport = transport
        proto._sendDatapointsNow([(p.replace(";", suffix + ";", 1) if ";" in p else p + suffix, d)
                                  for p, d in points])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(transport.value())
""")


def test_carbons_own_client_protocols(tmp_path):
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        missing(f"{DEBIAN_PYTHON} is not installed (Debian package python3)")
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import carbon.client, twisted.internet.testing"],
                           capture_output=True, timeout=60)
    if probe.returncode:
        missing("Debian's python3 cannot import carbon.client (Debian package graphite-carbon)")
    with FakeCarbon() as carbon:
        bucky = start(tmp_path, carbon)
        try:
            subprocess.run([DEBIAN_PYTHON, "-c", CARBON_CLIENT,
                            str(bucky.options["carbon_line_port"]),
                            str(bucky.options["carbon_pickle_port"])],
                           check=True, timeout=60, capture_output=True)
            want = set()
            for suffix in (".line", ".pickle"):
                want |= {(f"carbon.client.a{suffix}", 1.25, TS),
                         (f"carbon.client.b{suffix}", 2, TS + 1),
                         (f"carbon.client.c{suffix};dc=x", -3.5, TS + 2)}
            assert carbon.wait_for(lambda pts: want <= set(pts), 15), carbon.points
        finally:
            assert bucky.stop() == 0


def test_a_reload_keeps_the_carbon_listeners(tmp_path):
    import signal

    with FakeCarbon() as carbon:
        bucky = start(tmp_path, carbon)
        try:
            port, pport = bucky.options["carbon_line_port"], bucky.options["carbon_pickle_port"]
            with socket.create_connection(("127.0.0.1", port)) as tcp:
                tcp.sendall(b"before.reload 1 1700000000\n")
            assert carbon.wait_for(lambda pts: ("before.reload", 1, TS) in pts, 15)
            bucky.send_signal(signal.SIGHUP)
            bucky.wait_stderr(lambda line: "configuration reloaded" in line, 30)
            with socket.create_connection(("127.0.0.1", port)) as tcp:
                tcp.sendall(b"after.reload 2 1700000001\n")
            with socket.create_connection(("127.0.0.1", pport)) as pk:
                pk.sendall(frame([("after.reload.pickle", (TS + 2, 3))]))
            assert carbon.wait_for(lambda pts: {("after.reload", 2, TS + 1),
                                                ("after.reload.pickle", 3, TS + 2)} <= set(pts),
                                   15)
        finally:
            assert bucky.stop() == 0
