"""Process resources: the UDP receive buffer the kernel grants, and memory given back to it."""

from __future__ import annotations

import logging
import socket

from bucky.daemon import sockets


def test_a_smaller_receive_buffer_is_logged(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sockets, "_RCVBUF", 1 << 40 >> 10)  # 1 GiB: more than any kernel grants
    with caplog.at_level(logging.WARNING, logger="bucky"):
        sock = sockets.bind_udp("127.0.0.1", 0, "statsd")
    try:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    finally:
        sock.close()
    assert "receive buffer" in caplog.text and f"{granted // 1024} KiB" in caplog.text
    assert "for statsd" in caplog.text


def test_a_granted_buffer_is_not_logged(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sockets, "_RCVBUF", 4096)
    with caplog.at_level(logging.WARNING, logger="bucky"):
        sockets.bind_udp("127.0.0.1", 0, "statsd").close()
    assert "receive buffer" not in caplog.text


def test_memory_trimmer_runs_on_its_period() -> None:
    from bucky.daemon.memory import Trimmer

    trimmer = Trimmer(period=30.0)
    if trimmer._trim is None:  # not glibc: nothing to give back, nothing to schedule
        assert not trimmer.maybe_trim(0.0)
        return
    assert not trimmer.maybe_trim(100.0)  # the first call only schedules
    assert not trimmer.maybe_trim(129.9)
    assert trimmer.maybe_trim(130.0) and trimmer.trims == 1
    assert not trimmer.maybe_trim(159.0)
    assert trimmer.maybe_trim(160.5) and trimmer.trims == 2
