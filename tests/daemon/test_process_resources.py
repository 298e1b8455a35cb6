"""Process resources: the UDP receive buffer the kernel grants, and memory given back to it."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace
from typing import Any, cast

from bucky.daemon import sockets
from bucky.daemon.plan import SocketPlan
from bucky.daemon.supervisor import bind_all


def _bind(*specs: SocketPlan) -> Any:
    return bind_all(cast(Any, SimpleNamespace(sockets=list(specs))))


def test_a_smaller_receive_buffer_is_logged_once_for_all_sockets(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sockets, "_RCVBUF", 1 << 40 >> 10)  # 1 GiB: more than any kernel grants
    with caplog.at_level(logging.WARNING, logger="bucky"):
        socks = _bind(SocketPlan("statsd", "udp", "127.0.0.1", 0, 1, "statsd"),
                      SocketPlan("collectd", "udp", "127.0.0.1", 0, 2, "collectd"),
                      SocketPlan("metricsd", "udp", "127.0.0.1", 0, 1, "metricsd"))
    try:
        granted = min(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
                      for group in socks.udp.values() for sock in group)
    finally:
        socks.close()
    (record,) = caplog.records  # one line, however many sockets
    assert "receive buffer" in caplog.text and f"{granted // 1024} KiB" in caplog.text
    assert "statsd on UDP 127.0.0.1:0" in caplog.text and "collectd on" in caplog.text
    assert f"sysctl -w net.core.rmem_max={1 << 30}" in record.getMessage()


def test_the_advice_names_root_only_to_someone_who_is_not_root() -> None:
    short = [("statsd on UDP 127.0.0.1:8125", 212992)]
    as_user = sockets.receive_buffer_advice(short, euid=1000)
    as_root = sockets.receive_buffer_advice(short, euid=0)
    assert as_user is not None and as_root is not None
    assert "sysctl -w net.core.rmem_max=16777216" in as_root
    assert "208 KiB" in as_root and "statsd on UDP 127.0.0.1:8125" in as_root
    assert "root" not in as_root
    assert "as root" in as_user
    assert sockets.receive_buffer_advice([], euid=0) is None


def test_a_granted_buffer_is_not_logged(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sockets, "_RCVBUF", 4096)
    with caplog.at_level(logging.WARNING, logger="bucky"):
        _bind(SocketPlan("statsd", "udp", "127.0.0.1", 0, 1, "statsd")).close()
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
