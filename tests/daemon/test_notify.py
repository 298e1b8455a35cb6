"""sd_notify datagrams (bucky.daemon.notify), against a unix datagram socket."""

import os
import socket
import time

import pytest

from bucky.daemon.notify import Notifier


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "n.sock")
        sock.bind(address)
    else:
        address = f"@bucky-notify-unit-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + address[1:])
    sock.settimeout(5)
    yield sock, address
    sock.close()


def fields(sock):
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_messages(listener):
    sock, address = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert n.enabled
    assert n.ready("running: statsd")
    assert fields(sock) == {"READY": "1", "STATUS": "running: statsd"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    msg = fields(sock)
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= before + 5_000_000
    assert n.stopping("bye\nnow")
    assert fields(sock) == {"STOPPING": "1", "STATUS": "bye now"}  # one line per field
    n.close()


def test_from_env_unsets_the_variable_so_children_never_see_it():
    env = {"NOTIFY_SOCKET": "/run/x"}
    assert Notifier.from_env(env).enabled
    assert "NOTIFY_SOCKET" not in env


def test_without_notify_socket_nothing_is_sent():
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False


def test_a_vanished_socket_is_not_an_error(tmp_path):
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.ready() is False
