"""Building pcap files byte by byte for tests: UDP in IPv4 or IPv6, in Ethernet or not."""

from __future__ import annotations

import struct


def udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def ipv4(segment: bytes, source: str = "127.0.0.1", destination: str = "127.0.0.1",
         protocol: int = 17, fragment: int = 0) -> bytes:
    addresses = bytes(int(x) for x in source.split(".")) + bytes(
        int(x) for x in destination.split("."))
    header = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(segment), 1, fragment, 64, protocol, 0)
    return header + addresses + segment


def ipv6(segment: bytes, next_header: int = 17, extension: bytes = b"") -> bytes:
    loopback = bytes(15) + b"\x01"
    header = struct.pack(">IHBB", 6 << 28, len(extension) + len(segment), next_header, 64)
    return header + loopback + loopback + extension + segment


def ethernet(packet: bytes, ethertype: int, vlan: bool = False) -> bytes:
    tag = struct.pack(">HH", 0x8100, 5) if vlan else b""
    return bytes(12) + tag + struct.pack(">H", ethertype) + packet


def pcap(frames: list[bytes], link_type: int, order: str = "<", nanoseconds: bool = False,
         snap: int | None = None) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, link_type)
    for index, frame in enumerate(frames):
        kept = frame if snap is None else frame[:snap]
        fraction = 250_000_000 if nanoseconds else 250_000
        out += struct.pack(order + "IIII", 1_700_000_000 + index, fraction, len(kept), len(frame))
        out += kept
    return out
