"""One way to write an address in logs, --check output and destination names."""

from bucky.addresses import format_address, format_peer
from bucky.protocol.placement import Destination


def test_format_address_brackets_ipv6_only() -> None:
    assert format_address("127.0.0.1", 2003) == "127.0.0.1:2003"
    assert format_address("carbon.example", 2004) == "carbon.example:2004"
    assert format_address("::1", 2004) == "[::1]:2004"


def test_format_peer() -> None:
    assert format_peer(("10.0.0.1", 53, 0, 0)) == "10.0.0.1:53"
    assert format_peer(("fe80::1", 8125, 0, 2)) == "[fe80::1]:8125"
    assert format_peer(None) == "unknown"
    assert format_peer("/run/sock") == "/run/sock"


def test_destinations_are_written_the_same_way() -> None:
    assert str(Destination("::1", 2004, "a")) == "[::1]:2004:a"
    assert str(Destination("127.0.0.1", 2003)) == "127.0.0.1:2003"
