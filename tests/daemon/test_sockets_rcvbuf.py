"""The receive buffer the kernel grants is read back, and a smaller one than asked is logged."""

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
