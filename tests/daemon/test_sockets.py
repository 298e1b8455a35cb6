"""bucky.daemon.sockets: what a bound socket is like when the children get it, and the one
message a taken port gives, for UDP and TCP alike."""

from __future__ import annotations

import socket

import pytest

from bucky.daemon.sockets import BindError, bind_tcp, bind_udp


@pytest.mark.parametrize(("bind", "kind"), [(bind_udp, socket.SOCK_DGRAM),
                                            (bind_tcp, socket.SOCK_STREAM)])
def test_a_bound_socket_is_non_blocking_and_inheritable(bind, kind) -> None:
    sock = bind("127.0.0.1", 0, "a test")
    try:
        assert sock.type == kind
        assert sock.getblocking() is False and sock.get_inheritable() is True
    finally:
        sock.close()


@pytest.mark.parametrize(("bind", "kind", "proto"), [(bind_udp, socket.SOCK_DGRAM, "UDP"),
                                                     (bind_tcp, socket.SOCK_STREAM, "TCP")])
def test_a_taken_port_is_one_bind_error_naming_the_purpose(bind, kind, proto) -> None:
    holder = socket.socket(socket.AF_INET, kind)
    holder.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BindError) as info:
            bind("127.0.0.1", port, "a test")
    finally:
        holder.close()
    assert str(info.value) == (
        f"cannot bind {proto} 127.0.0.1:{port} for a test: Address already in use")
