"""collectd signing/encryption primitives and the AuthFile reader (utils_fbhash.c semantics)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from Crypto.Cipher import AES

from bucky.protocol.collectd import parse_auth_file
from bucky.protocol.collectd_security import (
    decrypt_payload,
    encrypt_datagram,
    sign_datagram,
    signature_matches,
)

PAYLOAD = b"\x00\x00\x00\x06host\x00"  # a host part


AUTH_FILES = [
    ("simple", "alice: s3cret\n", {"alice": b"s3cret"}),
    ("no space", "alice:s3cret", {"alice": b"s3cret"}),
    ("tabs and CRLF", "alice:\t s3cret\r\nbob: pw\r\n", {"alice": b"s3cret", "bob": b"pw"}),
    ("leading whitespace", "   alice: pw", {"alice": b"pw"}),
    ("comment and blank lines", "# users\n\n  # more\nalice: pw\n", {"alice": b"pw"}),
    ("key not right-trimmed", "bob : pw", {"bob ": b"pw"}),
    ("trailing spaces kept in the password", "alice: pw  \n", {"alice": b"pw  "}),
    ("colons in the password", "alice: a:b:c", {"alice": b"a:b:c"}),
    ("no colon: ignored", "alice pw\n", {}),
    ("no password: ignored", "alice:\nbob:   \n", {}),
    ("first duplicate wins", "alice: one\nalice: two\n", {"alice": b"one"}),
    ("sidecar line", "vecsigner: S1gn-Me-Pl3ase", {"vecsigner": b"S1gn-Me-Pl3ase"}),
    ("UTF-8 password", "alice: pässword", {"alice": "pässword".encode()}),
    ("empty", "", {}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in AUTH_FILES], ids=[c[0] for c in AUTH_FILES]
)
def test_parse_auth_file(text: str, expected: dict) -> None:
    assert parse_auth_file(text) == expected


def test_signature_layout_and_mac() -> None:
    datagram = sign_datagram(PAYLOAD, b"alice", b"pw")
    ptype, length = struct.unpack_from(">HH", datagram)
    assert (ptype, length) == (0x0200, 36 + 5)
    mac = hmac.new(b"pw", b"alice" + PAYLOAD, hashlib.sha256).digest()
    assert datagram[4:36] == mac
    assert datagram[36:41] == b"alice"
    assert datagram[41:] == PAYLOAD
    assert signature_matches(mac, b"alice", PAYLOAD, b"pw")
    assert not signature_matches(mac, b"alice", PAYLOAD, b"pw2")
    assert not signature_matches(mac, b"alicf", PAYLOAD, b"pw")
    assert signature_matches(mac, b"alice", memoryview(PAYLOAD), b"pw")


def test_encryption_layout_matches_collectd() -> None:
    iv = bytes(range(16))
    datagram = encrypt_datagram(PAYLOAD, b"bob", b"pw", iv)
    ptype, length, ulen = struct.unpack_from(">HHH", datagram)
    assert (ptype, length, ulen) == (0x0210, 42 + 3 + len(PAYLOAD), 3)
    assert len(datagram) == length
    assert datagram[6:9] == b"bob" and datagram[9:25] == iv
    # Independent check: OFB keystream built from AES-ECB, key = SHA-256(password).
    ecb = AES.new(hashlib.sha256(b"pw").digest(), AES.MODE_ECB)
    keystream, block = b"", iv
    while len(keystream) < len(datagram) - 25:
        block = ecb.encrypt(block)
        keystream += block
    plain = bytes(a ^ b for a, b in zip(datagram[25:], keystream, strict=False))
    assert plain == hashlib.sha1(PAYLOAD).digest() + PAYLOAD
    assert decrypt_payload(iv, datagram[25:], b"pw") == PAYLOAD
    assert decrypt_payload(iv, datagram[25:], b"wrong") is None


def test_encrypt_rejects_a_bad_iv() -> None:
    with pytest.raises(ValueError):
        encrypt_datagram(PAYLOAD, b"bob", b"pw", b"short")


def test_encrypt_rejects_a_payload_too_large_for_one_part() -> None:
    with pytest.raises(ValueError):
        encrypt_datagram(b"\0" * 65500, b"bob", b"pw", bytes(16))
