"""bucky-send: the payloads it builds are what the daemon's decoders accept, and they arrive."""

from __future__ import annotations

import io
import socket
import threading

import pytest

from bucky import send
from bucky.protocol import collectd, statsd
from bucky.protocol.collectd_records import DERIVE, GAUGE


def test_statsd_lines_make_one_datagram_and_a_bad_line_is_refused() -> None:
    assert send.statsd_payload(["app.hits:1|c", "app.load:0.5|g"]) == (
        b"app.hits:1|c\napp.load:0.5|g")
    assert not statsd.parse(send.statsd_payload(["app.hits:1|c"])).errors
    with pytest.raises(send.BadLine, match="app.hits:x"):
        send.statsd_payload(["app.hits:x|c"])


def test_carbon_lines_get_the_time_when_they_have_none() -> None:
    assert send.carbon_payload(["a.b 1", "c.d 2.5 1700000000"], now=1700000123.7) == (
        b"a.b 1 1700000123\nc.d 2.5 1700000000\n")
    with pytest.raises(send.BadLine, match="bad-value"):
        send.carbon_payload(["a.b one"], now=0)


def test_collectd_value_lists_decode_as_sent() -> None:
    (datagram,) = send.collectd_payloads(
        ["web1/app-eu/gauge-queue 17", "cpu-0/cpu-idle 100:200"], now=1700000000.0,
        host="here", ds_type=DERIVE)
    decoded = collectd.decode(datagram)
    assert not decoded.errors
    first, second = decoded.records
    assert (first.host, first.plugin, first.plugin_instance, first.type,
            first.type_instance) == ("web1", "app", "eu", "gauge", "queue")
    assert first.values == ((DERIVE, 17),)
    assert (second.host, second.plugin, second.plugin_instance) == ("here", "cpu", "0")
    assert second.values == ((DERIVE, 100), (DERIVE, 200))
    assert first.time == 1700000000.0
    (gauge,) = send.collectd_payloads(["a/b 0.5"], 1.0, "h", GAUGE)
    assert collectd.decode(gauge).records[0].values == ((GAUGE, 0.5),)
    for bad in ("just-a-name 1", "a/b", "h/a/b/c 1", "a/b x"):
        with pytest.raises(send.BadLine):
            send.collectd_payloads([bad], 1.0, "h", GAUGE)


def test_the_default_ports_are_buckys_defaults() -> None:
    assert send.DEFAULT_PORTS == {"statsd": 8125, "carbon": 2013, "collectd": 25826}


def test_statsd_and_collectd_arrive_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = str(receiver.getsockname()[1])
        out = io.StringIO()
        assert send.main(["statsd", "app.hits:1|c", "--port", port], stdout=out) == 0
        assert receiver.recv(65535) == b"app.hits:1|c"
        assert "sent 1 line in 1 datagram over UDP to 127.0.0.1 port" in out.getvalue()
        assert send.main(["collectd", "h/p/gauge 3", "--port", port], stdout=out) == 0
        (record,) = collectd.decode(receiver.recv(65535)).records
        assert (record.host, record.plugin, record.values) == ("h", "p", ((GAUGE, 3.0),))
        stdin = io.StringIO("a:1|c\n\nb:2|c\n")
        assert send.main(["statsd", "-", "--port", port], stdin=stdin, stdout=out) == 0
        assert receiver.recv(65535) == b"a:1|c\nb:2|c"


def test_carbon_arrives_over_tcp() -> None:
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(4096):
                    received.extend(chunk)

        thread = threading.Thread(target=accept)
        thread.start()
        port = str(server.getsockname()[1])
        assert send.main(["carbon", "a.b 1", "--port", port], stdout=io.StringIO(),
                         clock=lambda: 1700000000.0) == 0
        thread.join(5)
    assert bytes(received) == b"a.b 1 1700000000\n"


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = str(unused.getsockname()[1])  # bound, not listening: refused
    assert send.main(["carbon", "a.b 1", "--port", port], stdout=io.StringIO()) == 1
    assert "cannot send" in capsys.readouterr().err
    assert send.main(["statsd", "nocolon", "--port", port], stdout=io.StringIO()) == 2
    assert "StatsD would reject" in capsys.readouterr().err
    assert send.main(["nosuch", "x"], stdout=io.StringIO()) == 2
