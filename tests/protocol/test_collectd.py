"""collectd network codec: real captures, security levels, hostile inputs, encoder habits.

The captures in tests/data/collectd/ were sent by Debian 12's collectd 5.12 and cross-checked by
a second collectd; tests/data/collectd/README.md describes them and their JSON sidecars.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path

import pytest

from bucky import dump
from bucky.errors import AuthError, DecodeError, ProtocolError
from bucky.protocol import collectd as codec
from bucky.protocol.collectd import Decoded, decode, encode, parse_auth_file
from bucky.protocol.collectd_records import (
    ABSOLUTE,
    COUNTER,
    DERIVE,
    GAUGE,
    OKAY,
    WARNING,
    Notification,
    ValueList,
)
from bucky.protocol.collectd_security import encrypt_datagram, sign_datagram

DATA = Path(__file__).resolve().parent.parent / "data" / "collectd"
DS_CODES = {"COUNTER": COUNTER, "GAUGE": GAUGE, "DERIVE": DERIVE, "ABSOLUTE": ABSOLUTE}
SEVERITY_CODES = {"failure": 1, "warning": 2, "okay": 4}
LEVELS = {"None": 0, "Sign": 1, "Encrypt": 2}

PLAIN_CAPTURES = ["plain", "alltypes", "notifications", "ipv6", "bigpacket"]
SIGNED_CAPTURES = ["signed", "alltypes-signed"]
ENCRYPTED_CAPTURES = ["encrypted", "alltypes-encrypted"]
ALL_CAPTURES = PLAIN_CAPTURES + SIGNED_CAPTURES + ENCRYPTED_CAPTURES


# ---------------------------------------------------------------------------------------------
# Capture helpers


def read_pkts(path: Path) -> list[bytes]:
    with path.open("rb") as fh:
        return list(dump.read_pkts(fh))


def load_capture(name: str) -> tuple[dict, list[bytes]]:
    sidecar = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return sidecar, read_pkts(DATA / sidecar["pkts_file"])


def credentials_of(sidecar: dict) -> dict[str, bytes]:
    return parse_auth_file(sidecar["auth_file_line"] + "\n")


def comparable(value: object) -> object:
    """NaN != NaN, so compare NaN as a marker string."""
    if value == "NaN" or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return value


def expected_key(entry: dict, security: str, username: str) -> tuple:
    common = (entry["host"], entry["plugin"], entry["plugin_instance"], entry["type"])
    common += (entry["type_instance"], float(entry["time"]))
    if entry.get("kind", "values") == "notification" or "message" in entry:
        severity = SEVERITY_CODES[entry["severity"]]
        return ("n",) + common + (severity, entry["message"], security, username)
    values = tuple(
        (DS_CODES[t], comparable(v)) for t, v in zip(entry["dstypes"], entry["values"], strict=True)
    )
    return ("v",) + common + (float(entry["interval"]), values, security, username)


def record_key(record: ValueList | Notification) -> tuple:
    if isinstance(record, Notification):
        return ("n",) + tuple(record)
    values = tuple((t, comparable(v)) for t, v in record.values)
    return ("v",) + tuple(record[:7]) + (values,) + tuple(record[8:])


def sidecar_keys(sidecar: dict, security: str, username: str) -> list[tuple]:
    entries = sidecar.get("decoded")
    if entries is None:  # bigpacket leaves `decoded` out: it equals expected_values
        entries = sidecar["expected_values"] + sidecar["expected_notifications"]
    return [expected_key(entry, security, username) for entry in entries]


def decode_all(packets: list[bytes], level: int = 0, credentials=None) -> Decoded:
    records: list = []
    errors: list = []
    for packet in packets:
        decoded = decode(packet, level, credentials)
        assert isinstance(decoded, Decoded)
        records += decoded.records
        errors += decoded.errors
    return Decoded(records, errors)


def reasons(decoded: Decoded) -> list[str]:
    return [error.reason for error in decoded.errors]


# ---------------------------------------------------------------------------------------------
# Real captures


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_capture_decodes_to_exactly_the_sidecar_records(name: str) -> None:
    sidecar, packets = load_capture(name)
    level = LEVELS[sidecar["security_level"]]
    security = {0: "none", 1: "sign", 2: "encrypt"}[level]
    username = sidecar["username"] or ""
    credentials = credentials_of(sidecar) if level else None
    decoded = decode_all(packets, level, credentials)
    assert decoded.errors == []
    got = Counter(record_key(r) for r in decoded.records)
    assert got == Counter(sidecar_keys(sidecar, security, username))
    counts = sidecar["decoded_record_count"]
    assert sum(isinstance(r, ValueList) for r in decoded.records) == counts["values"]
    assert sum(isinstance(r, Notification) for r in decoded.records) == counts["notifications"]


@pytest.mark.parametrize("name", [n for n in ALL_CAPTURES if n != "bigpacket"])
def test_capture_records_come_in_wire_order(name: str) -> None:
    sidecar, packets = load_capture(name)
    level = LEVELS[sidecar["security_level"]]
    credentials = credentials_of(sidecar) if level else None
    decoded = decode_all(packets, level, credentials)
    security = {0: "none", 1: "sign", 2: "encrypt"}[level]
    assert [record_key(r) for r in decoded.records] == sidecar_keys(
        sidecar, security, sidecar["username"] or ""
    )


@pytest.mark.parametrize("name", ["notifications", "alltypes", "alltypes-signed"])
def test_exact_captures_hold_what_the_exec_plugin_sent(name: str) -> None:
    sidecar, packets = load_capture(name)
    assert sidecar["expected_exact"]
    level = LEVELS[sidecar["security_level"]]
    decoded = decode_all(packets, level, credentials_of(sidecar) if level else None)
    keys = Counter(record_key(r)[:-2] for r in decoded.records)  # without security, username
    expected = [
        expected_key(e, "", "")[:-2]
        for e in sidecar["expected_values"] + sidecar["expected_notifications"]
    ]
    assert keys == Counter(expected)


def test_alltypes_extremes_survive_exactly() -> None:
    _, packets = load_capture("alltypes")
    values = [v for r in decode_all(packets).records for v in r.values]
    assert (DERIVE, -(2**63)) in values and (DERIVE, 2**63 - 1) in values
    assert (ABSOLUTE, 2**64 - 1) in values and (ABSOLUTE, 2**63) in values
    gauges = [v for t, v in values if t == GAUGE]
    assert any(math.isnan(g) for g in gauges)
    assert 5e-324 in gauges and 2.2250738585072014e-308 in gauges
    assert any(g == 0.0 and math.copysign(1, g) < 0 for g in gauges)  # -0.0 kept


@pytest.mark.parametrize("name", SIGNED_CAPTURES)
def test_signed_capture_at_level_0_without_credentials_reads_each_value_once(name: str) -> None:
    sidecar, packets = load_capture(name)
    decoded = decode_all(packets, 0, None)
    assert decoded.errors == []
    assert Counter(map(record_key, decoded.records)) == Counter(sidecar_keys(sidecar, "none", ""))


@pytest.mark.parametrize("name", SIGNED_CAPTURES)
def test_signed_capture_at_level_0_with_credentials_is_verified(name: str) -> None:
    sidecar, packets = load_capture(name)
    decoded = decode_all(packets, 0, credentials_of(sidecar))
    assert decoded.errors == []
    expected = sidecar_keys(sidecar, "sign", sidecar["username"])
    assert Counter(map(record_key, decoded.records)) == Counter(expected)


@pytest.mark.parametrize("name", ENCRYPTED_CAPTURES)
@pytest.mark.parametrize("level", [0, 1, 2])
def test_encrypted_capture_decrypts_at_every_level(name: str, level: int) -> None:
    sidecar, packets = load_capture(name)
    decoded = decode_all(packets, level, credentials_of(sidecar))
    assert decoded.errors == []
    expected = sidecar_keys(sidecar, "encrypt", sidecar["username"])
    assert Counter(map(record_key, decoded.records)) == Counter(expected)


@pytest.mark.parametrize("name", ENCRYPTED_CAPTURES)
def test_encrypted_capture_without_credentials_is_unreadable(name: str) -> None:
    _, packets = load_capture(name)
    decoded = decode_all(packets, 0, None)
    assert decoded.records == []
    assert set(reasons(decoded)) == {"no-credentials"}
    assert all(isinstance(e, AuthError) for e in decoded.errors)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("signed", "bad-signature"), ("alltypes-signed", "bad-signature")]
    + [("encrypted", "bad-checksum"), ("alltypes-encrypted", "bad-checksum")],
)
@pytest.mark.parametrize("level", [0, 1, 2])
def test_wrong_password_rejects(name: str, reason: str, level: int) -> None:
    sidecar, packets = load_capture(name)
    credentials = {sidecar["username"]: b"not-the-password"}
    decoded = decode_all(packets, level, credentials)
    assert decoded.records == []
    expected = reason
    if level == 2 and reason == "bad-signature":  # never verified: not encrypted
        expected = "unencrypted-data-ignored"
    assert set(reasons(decoded)) == {expected}


@pytest.mark.parametrize("name", SIGNED_CAPTURES)
def test_signed_capture_unknown_user_rejects_when_an_auth_file_exists(name: str) -> None:
    _, packets = load_capture(name)
    decoded = decode_all(packets, 0, {"somebody-else": b"pw"})
    assert decoded.records == []
    assert set(reasons(decoded)) == {"unknown-user"}


@pytest.mark.parametrize("name", ["plain", "alltypes", "notifications"])
@pytest.mark.parametrize(
    ("level", "reason"), [(1, "unsigned-data-ignored"), (2, "unencrypted-data-ignored")]
)
def test_plain_capture_is_rejected_by_sign_and_encrypt_levels(
    name: str, level: int, reason: str
) -> None:
    _, packets = load_capture(name)
    decoded = decode_all(packets, level, {"u": b"p"})
    assert decoded.records == []
    assert reasons(decoded) == [reason] * len(packets)


@pytest.mark.parametrize("name", SIGNED_CAPTURES)
def test_signed_capture_level_1_accepts_level_2_rejects(name: str) -> None:
    sidecar, packets = load_capture(name)
    credentials = credentials_of(sidecar)
    assert len(decode_all(packets, 1, credentials).records) > 0
    rejected = decode_all(packets, 2, credentials)
    assert rejected.records == []
    assert set(reasons(rejected)) == {"unencrypted-data-ignored"}


@pytest.mark.parametrize("name", SIGNED_CAPTURES)
def test_signed_capture_level_1_without_credentials_rejects(name: str) -> None:
    _, packets = load_capture(name)
    decoded = decode_all(packets, 1, None)
    assert decoded.records == []
    assert set(reasons(decoded)) == {"no-credentials"}


@pytest.mark.parametrize("name", PLAIN_CAPTURES)
def test_encoder_writes_the_parts_collectd_writes(name: str) -> None:
    """Same part sequence and size as collectd's own sender, datagram for datagram."""
    sidecar, packets = load_capture(name)
    for packet in packets:
        records = decode(packet).records
        (again,) = encode(records, max_size=sidecar["max_packet_size"])
        assert part_types(again) == part_types(packet)
        assert len(again) == len(packet)
        assert list(map(record_key, decode(again).records)) == list(map(record_key, records))


def test_encoder_splits_big_captures_within_max_size() -> None:
    sidecar, packets = load_capture("bigpacket")
    records = decode_all(packets).records
    again = encode(records, max_size=sidecar["max_packet_size"])
    assert all(len(d) <= sidecar["max_packet_size"] for d in again)
    assert list(map(record_key, decode_all(again).records)) == list(map(record_key, records))


def part_types(datagram: bytes) -> list[int]:
    off, out = 0, []
    while len(datagram) - off > 4:
        ptype, length = struct.unpack_from(">HH", datagram, off)
        out.append(ptype)
        off += length
    return out


# ---------------------------------------------------------------------------------------------
# Wire builders for hand-made datagrams

T = 1_700_000_000 * 2**30  # a time_hr


def part(ptype: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", ptype, 4 + len(body) if length is None else length) + body


def string(ptype: int, text: bytes) -> bytes:
    return part(ptype, text + b"\0")


def number(ptype: int, value: int) -> bytes:
    return part(ptype, struct.pack(">Q", value))


def values(*pairs: tuple[int, bytes], count: int | None = None) -> bytes:
    types = bytes(t for t, _ in pairs)
    n = len(pairs) if count is None else count
    return part(codec.VALUES, struct.pack(">H", n) + types + b"".join(raw for _, raw in pairs))


def gauge(x: float) -> tuple[int, bytes]:
    return (GAUGE, struct.pack("<d", x))


def derive(x: int) -> tuple[int, bytes]:
    return (DERIVE, struct.pack(">q", x))


IDENT = (
    string(codec.HOST, b"web-01")
    + number(codec.TIME_HR, T)
    + number(codec.INTERVAL_HR, 10 * 2**30)
    + string(codec.PLUGIN, b"cpu")
    + string(codec.TYPE, b"gauge")
)
GOOD = values(gauge(1.5))
NOTE = number(codec.SEVERITY, WARNING) + string(codec.MESSAGE, b"disk almost full")
USER, PASSWORD = "alice", b"s3cret"
CREDS = {USER: PASSWORD, "bob": b"hunter2"}
IV = bytes(range(16))


def signed(payload: bytes, user: str = USER, password: bytes = PASSWORD) -> bytes:
    return sign_datagram(payload, user.encode(), password)


def encrypted(payload: bytes, user: str = USER, password: bytes = PASSWORD) -> bytes:
    return encrypt_datagram(payload, user.encode(), password, IV)


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# (name, datagram, security level, credentials, records expected, error reasons expected)
HOSTILE = [
    ("valid", IDENT + GOOD, 0, None, 1, []),
    ("valid notification", IDENT + NOTE, 0, None, 1, []),
    ("length < 4 stops", IDENT + GOOD + part(codec.VALUES, b"", 2) + GOOD, 0, None, 1,
     ["bad-part-length"]),
    ("length 0 non-zero type stops", IDENT + GOOD + b"\x00\x06\x00\x00" + GOOD, 0, None, 1,
     ["bad-part-length"]),
    ("length = 4 string", IDENT + GOOD + part(codec.HOST, b"") + GOOD, 0, None, 1,
     ["bad-string"]),
    ("length = 4 values", IDENT + GOOD + part(codec.VALUES, b"") + GOOD, 0, None, 1,
     ["bad-values-length"]),
    ("length = 4 number", IDENT + GOOD + part(codec.TIME_HR, b"") + GOOD, 0, None, 1,
     ["bad-number-length"]),
    ("length = 4 unknown part is skipped", IDENT + part(0x0777, b"") + GOOD, 0, None, 1,
     ["unknown-part"]),
    ("length = 4 signature", IDENT + GOOD + part(0x0200, b"") + GOOD, 0, None, 1,
     ["bad-signature-length"]),
    ("length = 4 encryption", IDENT + GOOD + part(0x0210, b"") + GOOD, 0, None, 1,
     ["bad-encryption-length"]),
    ("length > remaining", IDENT + GOOD + part(codec.VALUES, b"\x00\x01\x01", 15), 0, None, 1,
     ["truncated-part"]),
    ("length > remaining by one", IDENT + GOOD + GOOD[:-1], 0, None, 1, ["truncated-part"]),
    ("string length > remaining", IDENT + part(codec.HOST, b"abc\0", 200), 0, None, 0,
     ["truncated-part"]),
    ("header cut short", IDENT + GOOD + b"\x00\x06\x00", 0, None, 1, ["trailing-bytes"]),
    ("4 bytes left", IDENT + GOOD + b"\x00\x06\x00\x0f", 0, None, 1, ["trailing-bytes"]),
    ("values n says 2 but length for 1", IDENT + values(gauge(1.0), count=2) + GOOD, 0, None,
     0, ["bad-values-length"]),
    ("values n says 1 but length for 2", IDENT + values(gauge(1.0), gauge(2.0), count=1), 0,
     None, 0, ["bad-values-length"]),
    ("values length not 6+9n", IDENT + part(codec.VALUES, b"\x00\x01\x01" + b"\0" * 9), 0,
     None, 0, ["bad-values-length"]),
    ("values length 5", IDENT + part(codec.VALUES, b"\x00"), 0, None, 0,
     ["bad-values-length"]),
    ("values n = 0 is dropped alone", IDENT + values() + GOOD, 0, None, 1, ["empty-values"]),
    ("unknown DS type aborts", IDENT + values((7, b"\0" * 8)) + GOOD, 0, None, 0,
     ["unknown-ds-type"]),
    ("unknown DS type among several", IDENT + values(gauge(1), (4, b"\0" * 8)) + GOOD, 0,
     None, 0, ["unknown-ds-type"]),
    ("unknown part then valid parts", IDENT + part(0x7777, b"xyz\xff" * 5) + GOOD + GOOD, 0,
     None, 2, ["unknown-part"]),
    ("unknown parts reported once", IDENT + part(0x77, b"") * 3 + GOOD,
     0, None, 1, ["unknown-part"]),
    ("skipped part then valid parts at level 1",
     GOOD + part(0x7777, b"abc") + signed(IDENT + GOOD), 1, CREDS, 1,
     ["unsigned-data-ignored"]),
    ("string without NUL", IDENT + part(codec.HOST, b"abc") + GOOD, 0, None, 0,
     ["string-not-terminated"]),
    ("empty host", IDENT + string(codec.HOST, b"") + GOOD, 0, None, 0,
     ["incomplete-value-list"]),
    ("empty plugin", IDENT + string(codec.PLUGIN, b"") + GOOD, 0, None, 0,
     ["incomplete-value-list"]),
    ("empty type", IDENT + string(codec.TYPE, b"") + GOOD, 0, None, 0,
     ["incomplete-value-list"]),
    ("empty instances are fine",
     IDENT + string(codec.PLUGIN_INSTANCE, b"") + string(codec.TYPE_INSTANCE, b"") + GOOD, 0,
     None, 1, []),
    ("127-byte string is fine", IDENT + string(codec.HOST, b"h" * 127) + GOOD, 0, None, 1, []),
    ("128-byte string is too long", IDENT + string(codec.HOST, b"h" * 128) + GOOD, 0, None, 0,
     ["string-too-long"]),
    ("255-byte message is fine", IDENT + number(codec.SEVERITY, OKAY)
     + string(codec.MESSAGE, b"m" * 255), 0, None, 1, []),
    ("256-byte message is too long", IDENT + number(codec.SEVERITY, OKAY)
     + string(codec.MESSAGE, b"m" * 256), 0, None, 0, ["string-too-long"]),
    ("non-UTF-8 host", IDENT + string(codec.HOST, b"h\xff\xfe") + GOOD, 0, None, 0,
     ["string-not-utf8"]),
    ("non-UTF-8 type instance", IDENT + string(codec.TYPE_INSTANCE, b"\xc3") + GOOD, 0, None, 0,
     ["string-not-utf8"]),
    ("non-UTF-8 message", IDENT + number(codec.SEVERITY, OKAY)
     + string(codec.MESSAGE, b"\x80"), 0, None, 0, ["string-not-utf8"]),
    ("values before host/plugin/type", GOOD + IDENT + GOOD, 0, None, 1,
     ["incomplete-value-list"]),
    ("values with nothing else", GOOD, 0, None, 0, ["incomplete-value-list"]),
    ("time 0", IDENT + number(codec.TIME_HR, 0) + GOOD, 0, None, 0, ["incomplete-value-list"]),
    ("number part of length 8", IDENT + part(codec.TIME_HR, b"\0" * 4) + GOOD, 0, None, 0,
     ["bad-number-length"]),
    ("number part of length 16", IDENT + part(codec.INTERVAL, b"\0" * 12) + GOOD, 0, None, 0,
     ["bad-number-length"]),
    ("notification without severity", IDENT + string(codec.MESSAGE, b"x"), 0, None, 0,
     ["bad-severity"]),
    ("notification severity 3", IDENT + number(codec.SEVERITY, 3) + string(codec.MESSAGE, b"x"),
     0, None, 0, ["bad-severity"]),
    ("notification empty message", IDENT + number(codec.SEVERITY, 1)
     + string(codec.MESSAGE, b""), 0, None, 0, ["incomplete-notification"]),
    ("notification time 0", number(codec.SEVERITY, 1) + string(codec.MESSAGE, b"x"), 0, None,
     0, ["incomplete-notification"]),
    ("zero padding after the last part", IDENT + GOOD + b"\0" * 40, 0, None, 1, []),
    ("one zero byte after the last part", IDENT + GOOD + b"\0", 0, None, 1, []),
    ("garbage after zero padding", IDENT + GOOD + b"\0" * 8 + b"\x01", 0, None, 1,
     ["bad-part-length"]),
    ("signature, no credentials, level 0: stepped over", signed(IDENT + GOOD), 0, None, 1, []),
    ("signature, no credentials, level 1", signed(IDENT + GOOD), 1, None, 0,
     ["no-credentials"]),
    ("signature only, no credentials", signed(b""), 0, None, 0, []),
    ("signature of length 36", part(0x0200, b"\0" * 32) + IDENT + GOOD, 0, None, 0,
     ["bad-signature-length"]),
    ("signature of length 36 with credentials", part(0x0200, b"\0" * 32) + IDENT + GOOD, 0,
     CREDS, 0, ["bad-signature-length"]),
    ("bad MAC", flip_byte(signed(IDENT + GOOD), 10), 0, CREDS, 0, ["bad-signature"]),
    ("payload changed after signing", flip_byte(signed(IDENT + GOOD), 60), 1, CREDS, 0,
     ["bad-signature"]),
    ("unknown user", signed(IDENT + GOOD, "mallory"), 0, CREDS, 0, ["unknown-user"]),
    ("non-UTF-8 user", sign_datagram(IDENT + GOOD, b"\xff", b"pw"), 0, CREDS, 0,
     ["unknown-user"]),
    ("good signature", signed(IDENT + GOOD), 1, CREDS, 1, []),
    ("encryption, ulen 0", part(0x0210, b"\0\0" + b"\0" * 40), 0, CREDS, 0,
     ["bad-username-length"]),
    ("encryption, ulen too large", part(0x0210, struct.pack(">H", 2) + b"ab" + b"\0" * 36), 0,
     CREDS, 0, ["bad-username-length"]),
    ("encryption, ulen = length - 42", part(0x0210, struct.pack(">H", 1) + b"a" + b"\0" * 36),
     0, CREDS, 0, ["bad-username-length"]),
    ("encryption, ulen 65535", part(0x0210, b"\xff\xff" + b"\0" * 60), 0, CREDS, 0,
     ["bad-username-length"]),
    ("encryption of length 42", part(0x0210, struct.pack(">H", 1) + b"\0" * 36), 0, CREDS, 0,
     ["bad-encryption-length"]),
    ("encryption, bad SHA-1", flip_byte(encrypted(IDENT + GOOD), 40), 2, CREDS, 0,
     ["bad-checksum"]),
    ("encryption, bad IV", flip_byte(encrypted(IDENT + GOOD), 15), 2, CREDS, 0,
     ["bad-checksum"]),
    ("encryption, unknown user", encrypted(IDENT + GOOD, "mallory"), 2, CREDS, 0,
     ["unknown-user"]),
    ("encryption, no credentials", encrypted(IDENT + GOOD), 0, None, 0, ["no-credentials"]),
    ("encryption, minimal payload", encrypted(b"\0"), 2, CREDS, 0, []),
    ("signed inside encrypted", encrypted(signed(IDENT + GOOD, "bob", b"hunter2")), 2, CREDS,
     1, []),
    ("encrypted inside signed", signed(encrypted(IDENT + GOOD)), 1, CREDS, 1, []),
    ("bad signature inside encrypted", encrypted(flip_byte(signed(IDENT + GOOD), 8)), 2, CREDS,
     0, ["bad-signature"]),
    ("NaN gauge", IDENT + values(gauge(math.nan)), 0, None, 1, []),
    ("plain parts after encryption at level 2", encrypted(IDENT + GOOD) + IDENT + GOOD, 2,
     CREDS, 1, ["unencrypted-data-ignored"]),
    ("signed data at level 2", signed(IDENT + GOOD), 2, CREDS, 0,
     ["unencrypted-data-ignored"]),
    ("encrypted part does not inherit outer state", IDENT + encrypted(GOOD), 0, CREDS, 0,
     ["incomplete-value-list"]),
    ("outer state continues after an encrypted part", IDENT + encrypted(b"\0") + GOOD, 0, CREDS,
     1, []),
    ("signed payload does not inherit outer state", IDENT + signed(GOOD), 0, CREDS, 0,
     ["incomplete-value-list"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("datagram", "level", "credentials", "n_records", "expected"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_and_edge_datagrams(
    datagram: bytes, level: int, credentials, n_records: int, expected: list[str]
) -> None:
    decoded = decode(datagram, level, credentials)
    assert isinstance(decoded, Decoded)
    assert len(decoded.records) == n_records, decoded
    assert reasons(decoded) == expected
    assert all(isinstance(error, ProtocolError) for error in decoded.errors)
    for error in decoded.errors:
        kind = AuthError if error.reason in AUTH_REASONS else DecodeError
        assert isinstance(error, kind), error


AUTH_REASONS = {
    "no-credentials",
    "unknown-user",
    "bad-signature",
    "bad-checksum",
    "unsigned-data-ignored",
    "unencrypted-data-ignored",
}


def test_decoded_fields_follow_the_part_state_machine() -> None:
    datagram = (
        IDENT
        + string(codec.PLUGIN_INSTANCE, b"0")
        + string(codec.TYPE_INSTANCE, b"user")
        + values(derive(-5))
        + string(codec.TYPE_INSTANCE, b"idle")
        + number(codec.TIME, 1_700_000_001)
        + number(codec.INTERVAL, 20)
        + values(gauge(2.5), derive(7))
        + string(codec.HOST, b"db-02")
        + NOTE
    )
    records = decode(datagram).records
    assert records == [
        ValueList("web-01", "cpu", "0", "gauge", "user", 1_700_000_000.0, 10.0, ((DERIVE, -5),)),
        ValueList(
            "web-01",
            "cpu",
            "0",
            "gauge",
            "idle",
            1_700_000_001.0,
            20.0,
            ((GAUGE, 2.5), (DERIVE, 7)),
        ),
        Notification(
            "db-02", "cpu", "0", "gauge", "idle", 1_700_000_001.0, WARNING, "disk almost full"
        ),
    ]


def test_all_value_types_decode() -> None:
    datagram = IDENT + values(
        (COUNTER, struct.pack(">Q", 2**64 - 1)),
        gauge(-0.25),
        derive(-(2**63)),
        (ABSOLUTE, struct.pack(">Q", 2**63)),
    )
    (record,) = decode(datagram).records
    assert record.values == (
        (COUNTER, 2**64 - 1),
        (GAUGE, -0.25),
        (DERIVE, -(2**63)),
        (ABSOLUTE, 2**63),
    )


@pytest.mark.parametrize(
    "types",
    [
        (GAUGE,),
        (COUNTER,),
        (GAUGE, GAUGE),
        (DERIVE, DERIVE, DERIVE),
        (COUNTER, DERIVE, ABSOLUTE, COUNTER, DERIVE),
        (GAUGE,) * 6,
        (GAUGE, COUNTER),
        (GAUGE, COUNTER, DERIVE, ABSOLUTE),
    ],
)
def test_value_decoders_for_every_width_and_byte_order(types: tuple[int, ...]) -> None:
    pairs = []
    for i, t in enumerate(types):
        pairs.append(gauge(i + 0.5) if t == GAUGE else (t, struct.pack(">Q", 1000 + i)))
    (record,) = decode(IDENT + values(*pairs)).records
    expected = tuple((t, i + 0.5 if t == GAUGE else 1000 + i) for i, t in enumerate(types))
    assert record.values == expected


def test_embedded_nul_ends_a_string_like_a_c_string() -> None:
    (record,) = decode(IDENT + string(codec.HOST, b"ab\0cd") + GOOD).records
    assert record.host == "ab"


def test_nan_gauge_keeps_its_bits() -> None:
    (record,) = decode(IDENT + values((GAUGE, b"\0\0\0\0\0\0\xf8\x7f"))).records
    ((ds_type, value),) = record.values
    assert ds_type == GAUGE and math.isnan(value)


def test_records_carry_security_and_user() -> None:
    plain = decode(IDENT + GOOD).records[0]
    assert (plain.security, plain.username) == ("none", "")
    sig = decode(signed(IDENT + GOOD), 1, CREDS).records[0]
    assert (sig.security, sig.username) == ("sign", USER)
    enc = decode(encrypted(IDENT + GOOD), 2, CREDS).records[0]
    assert (enc.security, enc.username) == ("encrypt", USER)
    both = decode(encrypted(signed(IDENT + GOOD, "bob", b"hunter2")), 2, CREDS).records[0]
    assert (both.security, both.username) == ("encrypt", "bob")
    note = decode(signed(IDENT + NOTE), 1, CREDS).records[0]
    assert isinstance(note, Notification) and (note.security, note.username) == ("sign", USER)


def test_signature_at_level_0_without_credentials_yields_each_value_once() -> None:
    datagram = signed(IDENT + GOOD + values(gauge(2.0)))
    decoded = decode(datagram)
    assert [r.values for r in decoded.records] == [((GAUGE, 1.5),), ((GAUGE, 2.0),)]
    assert {r.security for r in decoded.records} == {"none"}


def test_parts_before_a_signature_are_plain_at_level_0() -> None:
    datagram = IDENT + GOOD + signed(IDENT + values(gauge(9.0)))
    decoded = decode(datagram, 0, CREDS)
    assert [(r.security, r.values[0][1]) for r in decoded.records] == [
        ("none", 1.5),
        ("sign", 9.0),
    ]


def test_a_64_kib_datagram_decodes() -> None:
    one = values(gauge(1.0))
    count = (65535 - len(IDENT)) // len(one)
    datagram = IDENT + one * count
    datagram += b"\0" * (65535 - len(datagram))  # zero padding up to the largest UDP payload
    decoded = decode(datagram)
    assert decoded.errors == []
    assert len(decoded.records) == count


@pytest.mark.parametrize("wrap", [encrypted, signed], ids=["encryption", "signature"])
def test_deep_nesting_is_bounded(wrap) -> None:
    datagram = IDENT + GOOD
    for _ in range(40):
        datagram = wrap(datagram)
    decoded = decode(datagram, 0, CREDS)  # stops after MAX_NESTING decryptions/verifications
    assert decoded.records == []
    assert reasons(decoded) == ["nesting-too-deep"]


@pytest.mark.parametrize("wrap", [encrypted, signed], ids=["encryption", "signature"])
def test_nesting_up_to_the_limit_is_followed(wrap) -> None:
    datagram = IDENT + GOOD
    for _ in range(codec.MAX_NESTING):
        datagram = wrap(datagram)
    decoded = decode(datagram, 0, CREDS)
    assert len(decoded.records) == 1 and decoded.errors == []


def test_many_encryption_parts_side_by_side() -> None:
    datagram = b"".join(encrypted(IDENT + GOOD) for _ in range(20))
    decoded = decode(datagram, 2, CREDS)
    assert len(decoded.records) == 20 and decoded.errors == []


def test_memos_are_bounded_and_never_change_results(monkeypatch) -> None:
    monkeypatch.setattr(codec, "_names", {})
    monkeypatch.setattr(codec, "_NAMES_MAX", 3)
    monkeypatch.setattr(codec, "_value_decoders", {})
    monkeypatch.setattr(codec, "_VALUE_DECODERS_MAX", 2)
    for round_ in range(2):
        for i in range(10):
            datagram = IDENT + string(codec.TYPE_INSTANCE, f"ti{i}".encode())
            datagram += values(*[gauge(float(i))] * (2 + i % 5))
            (record,) = decode(datagram).records
            assert record.type_instance == f"ti{i}", round_
            assert record.values == ((GAUGE, float(i)),) * (2 + i % 5)
        assert len(codec._names) <= 3 and len(codec._value_decoders) <= 2
    for _ in range(2):  # invalid names are never memoised
        assert reasons(decode(IDENT + string(codec.HOST, b"\xff") + GOOD)) == ["string-not-utf8"]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    datagram = IDENT + GOOD
    assert decode(bytearray(datagram)) == decode(datagram)
    assert decode(memoryview(datagram)) == decode(datagram)


def test_decode_rejects_a_bad_security_level_argument() -> None:
    with pytest.raises(ValueError):
        decode(IDENT + GOOD, 3)


def test_str_passwords_in_credentials_are_accepted() -> None:
    assert len(decode(signed(IDENT + GOOD), 1, {USER: PASSWORD.decode()}).records) == 1


# ---------------------------------------------------------------------------------------------
# Encoder


VL = ValueList("web-01", "cpu", "0", "cpu", "user", 1_700_000_000.5, 10.0, ((DERIVE, 42),))
NOTIFICATION = Notification("web-01", "", "", "", "", 1_700_000_001.0, OKAY, "recovered")


def test_encoder_writes_identifier_parts_only_when_they_change() -> None:
    records = [VL, VL._replace(type_instance="idle"), VL._replace(plugin_instance="1")]
    (datagram,) = encode(records)
    host, time_hr, interval_hr, plugin, pi, type_, ti = (
        codec.HOST,
        codec.TIME_HR,
        codec.INTERVAL_HR,
        codec.PLUGIN,
        codec.PLUGIN_INSTANCE,
        codec.TYPE,
        codec.TYPE_INSTANCE,
    )
    assert part_types(datagram) == [
        host, time_hr, interval_hr, plugin, pi, type_, ti, codec.VALUES,
        ti, codec.VALUES,
        pi, ti, codec.VALUES,
    ]  # fmt: skip
    assert decode(datagram).records == records


def test_encoder_resets_empty_instances_explicitly() -> None:
    records = [VL, VL._replace(type_instance="")]
    (datagram,) = encode(records)
    assert part_types(datagram)[-2:] == [codec.TYPE_INSTANCE, codec.VALUES]
    assert decode(datagram).records == records


def test_encoder_mixes_notifications_and_value_lists() -> None:
    records = [VL, NOTIFICATION, VL]
    datagrams = encode(records)
    assert decode_all(datagrams).records == records


def test_encoder_splits_at_max_size_and_restarts_the_state() -> None:
    records = [VL._replace(type_instance=f"t{i}") for i in range(200)]
    datagrams = encode(records, max_size=300)
    assert len(datagrams) > 10
    assert all(len(d) <= 300 for d in datagrams)
    assert all(part_types(d)[0] == codec.HOST for d in datagrams)
    assert decode_all(datagrams).records == records


@pytest.mark.parametrize("level", [1, 2])
def test_encoder_reserves_room_for_the_security_header(level: int) -> None:
    records = [VL._replace(type_instance=f"t{i}") for i in range(200)]
    datagrams = encode(
        records, max_size=1024, security_level=level, username=USER, password=PASSWORD
    )
    assert all(len(d) <= 1024 for d in datagrams)
    assert max(len(d) for d in datagrams) > 1024 - 60
    decoded = decode_all(datagrams, level, CREDS)
    assert decoded.errors == []
    assert [r._replace(security="none", username="") for r in decoded.records] == records
    assert {(r.security, r.username) for r in decoded.records} == {
        ("sign" if level == 1 else "encrypt", USER)
    }


def test_encryption_uses_the_rng_for_each_datagram() -> None:
    calls = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return bytes([len(calls)]) * n

    records = [VL._replace(type_instance=f"t{i}") for i in range(100)]
    datagrams = encode(
        records, max_size=500, security_level=2, username=USER, password="s3cret", rng=rng
    )
    assert calls == [16] * len(datagrams)
    calls.clear()  # the same IVs again: the same datagrams (str and bytes passwords agree)
    again = encode(
        records, max_size=500, security_level=2, username=USER, password=b"s3cret", rng=rng
    )
    assert again == datagrams


def test_signed_datagram_matches_collectd_layout() -> None:
    (datagram,) = encode([VL], security_level=1, username=USER, password=PASSWORD)
    ptype, length = struct.unpack_from(">HH", datagram)
    assert (ptype, length) == (0x0200, 36 + len(USER))
    assert datagram[36 : 36 + len(USER)] == USER.encode()


def test_encoder_writes_gauges_little_endian_and_integers_big_endian() -> None:
    record = VL._replace(values=((GAUGE, 1.0), (COUNTER, 1), (DERIVE, -1), (ABSOLUTE, 2)))
    (datagram,) = encode([record])
    tail = datagram[-(6 + 4 + 32) :]
    assert tail[:6] == struct.pack(">HHH", codec.VALUES, 42, 4)
    assert tail[6:10] == bytes([GAUGE, COUNTER, DERIVE, ABSOLUTE])
    assert tail[10:] == (
        struct.pack("<d", 1.0) + struct.pack(">Q", 1) + struct.pack(">q", -1) + struct.pack(">Q", 2)
    )


def test_encoder_accepts_int_gauges() -> None:
    (datagram,) = encode([VL._replace(values=((GAUGE, 3),))])
    assert decode(datagram).records[0].values == ((GAUGE, 3.0),)


BAD_RECORDS = [
    ("empty host", VL._replace(host="")),
    ("empty plugin", VL._replace(plugin="")),
    ("empty type", VL._replace(type="")),
    ("time 0", VL._replace(time=0)),
    ("negative time", VL._replace(time=-1.0)),
    ("NaN time", VL._replace(time=math.nan)),
    ("negative interval", VL._replace(interval=-1.0)),
    ("NUL in a name", VL._replace(plugin_instance="a\0b")),
    ("name too long", VL._replace(type_instance="x" * 128)),
    ("no values", VL._replace(values=())),
    ("unknown DS type", VL._replace(values=((9, 1),))),
    ("negative counter", VL._replace(values=((COUNTER, -1),))),
    ("counter too large", VL._replace(values=((ABSOLUTE, 2**64),))),
    ("derive too large", VL._replace(values=((DERIVE, 2**63),))),
    ("float counter", VL._replace(values=((COUNTER, 1.5),))),
    ("str gauge", VL._replace(values=((GAUGE, "1"),))),
    ("bad severity", NOTIFICATION._replace(severity=3)),
    ("empty message", NOTIFICATION._replace(message="")),
    ("message too long", NOTIFICATION._replace(message="m" * 256)),
    ("notification time 0", NOTIFICATION._replace(time=0.0)),
    ("not a record", ("web-01", "cpu")),
]


@pytest.mark.parametrize("record", [r for _, r in BAD_RECORDS], ids=[n for n, _ in BAD_RECORDS])
def test_encoder_rejects_what_decode_would_reject(record) -> None:
    with pytest.raises(ValueError):
        encode([record])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"security_level": 1},
        {"security_level": 2, "username": USER},
        {"security_level": 1, "password": PASSWORD},
        {"security_level": 1, "username": "u" * 65, "password": PASSWORD},
        {"security_level": 3, "username": USER, "password": PASSWORD},
        {"max_size": 10},
        {"max_size": 70000},
    ],
)
def test_encoder_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        encode([VL], **kwargs)


def test_encoder_rejects_a_record_larger_than_max_size() -> None:
    big = VL._replace(values=tuple((GAUGE, float(i)) for i in range(200)))
    with pytest.raises(ValueError, match="does not fit"):
        encode([big], max_size=1024)


def test_encode_of_nothing_is_no_datagrams() -> None:
    assert encode([]) == []
    assert encode([], security_level=2, username=USER, password=PASSWORD) == []
