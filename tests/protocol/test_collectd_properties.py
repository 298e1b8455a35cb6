"""Properties of the collectd codec, checked with Hypothesis.

- decode(any bytes) returns Decoded and never raises (errors are ProtocolErrors);
- decode(encode(records)) == records, also across datagrams at any max_size, signed, encrypted;
- one flipped bit in a signed or encrypted datagram rejects the protected payload.
"""

from __future__ import annotations

import math
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bucky.errors import ProtocolError
from bucky.protocol.collectd import Decoded, decode, encode
from bucky.protocol.collectd_records import (
    ABSOLUTE,
    COUNTER,
    DERIVE,
    GAUGE,
    Notification,
    ValueList,
)
from bucky.protocol.collectd_security import encrypt_datagram, sign_datagram

USER, PASSWORD = "alice", b"s3cret"
# Generous per-example bound: crypto examples take milliseconds, a loaded CI box may be slower.
BOUNDED = settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow])
CREDS = {USER: PASSWORD, "bob": b"hunter2"}


def check_decoded(decoded: object) -> Decoded:
    assert isinstance(decoded, Decoded)
    assert all(isinstance(e, ProtocolError) for e in decoded.errors)
    assert all(isinstance(r, (ValueList, Notification)) for r in decoded.records)
    return decoded


# ---------------------------------------------------------------------------------------------
# decode() never raises


@BOUNDED
@given(st.binary(max_size=2048), st.sampled_from([0, 1, 2]), st.sampled_from([None, CREDS]))
@example(b"\x02\x00\x00\x24" + b"\0" * 32, 0, None)  # a bare signature part (CVE-2017-7401)
@example(b"\x02\x10\x00\x2b\x00\x01" + b"a" * 37, 0, CREDS)
def test_decode_of_any_bytes_returns_decoded(data: bytes, level: int, credentials) -> None:
    check_decoded(decode(data, level, credentials))


KNOWN_PART_TYPES = [0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0x100, 0x101, 0x200, 0x210]


@st.composite
def part_soup(draw) -> bytes:
    """Datagrams of plausible parts with lying lengths, odd bodies and random types."""
    out = b""
    for _ in range(draw(st.integers(0, 12))):
        ptype = draw(st.sampled_from(KNOWN_PART_TYPES) | st.integers(0, 0xFFFF))
        kind = draw(st.sampled_from(["string", "number", "values", "raw"]))
        if kind == "string":
            body = draw(st.binary(max_size=140)) + draw(st.sampled_from([b"\0", b""]))
        elif kind == "number":
            body = struct.pack(">Q", draw(st.integers(0, 2**64 - 1)))
        elif kind == "values":
            n = draw(st.integers(0, 4))
            body = struct.pack(">H", draw(st.sampled_from([n, n + 1, max(n - 1, 0)])))
            body += bytes(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)))
            body += draw(st.binary(min_size=8 * n, max_size=8 * n))
        else:
            body = draw(st.binary(max_size=64))
        length = 4 + len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, -5, 300]))
        out += struct.pack(">HH", ptype, max(0, min(length, 0xFFFF))) + body
    return out


@BOUNDED
@given(part_soup(), st.sampled_from([0, 1, 2]), st.sampled_from([None, CREDS]))
def test_decode_of_part_soup_returns_decoded(data: bytes, level: int, credentials) -> None:
    check_decoded(decode(data, level, credentials))


@BOUNDED
@given(part_soup(), st.sampled_from([1, 2]))
def test_decode_of_protected_part_soup_returns_decoded(payload: bytes, level: int) -> None:
    for datagram in (
        sign_datagram(payload, USER.encode(), PASSWORD),
        encrypt_datagram(payload, USER.encode(), PASSWORD, b"\x07" * 16),
    ):
        check_decoded(decode(datagram, level, CREDS))
        check_decoded(decode(datagram, 0, None))


# ---------------------------------------------------------------------------------------------
# Round trips

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
)
required_names = names.filter(bool)
times = st.integers(1, 2**62).map(lambda raw: raw / 2**30)  # what a time_hr part can carry
intervals = st.integers(0, 2**40).map(lambda raw: raw / 2**30)
value_pairs = st.one_of(
    st.tuples(st.just(COUNTER), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(GAUGE), st.floats(allow_nan=True, allow_infinity=True)),
    st.tuples(st.just(DERIVE), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(ABSOLUTE), st.integers(0, 2**64 - 1)),
)
value_lists = st.builds(
    ValueList,
    host=required_names,
    plugin=required_names,
    plugin_instance=names,
    type=required_names,
    type_instance=names,
    time=times,
    interval=intervals,
    values=st.lists(value_pairs, min_size=1, max_size=12).map(tuple),
    security=st.just("none"),
    username=st.just(""),
)
notifications = st.builds(
    Notification,
    host=names,
    plugin=names,
    plugin_instance=names,
    type=names,
    type_instance=names,
    time=times,
    severity=st.sampled_from([1, 2, 4]),
    message=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=1,
        max_size=60,
    ),
    security=st.just("none"),
    username=st.just(""),
)
records_lists = st.lists(st.one_of(value_lists, value_lists, notifications), max_size=40)


def exact(record: ValueList | Notification) -> tuple:
    """A record with gauges as their bytes, so NaN (and its payload) and -0.0 compare exactly."""
    if isinstance(record, ValueList):
        pairs = tuple((t, struct.pack("<d", v) if t == GAUGE else v) for t, v in record.values)
        return tuple(record._replace(values=pairs))
    return tuple(record)


def decode_all(datagrams: list[bytes], level: int = 0, credentials=None) -> Decoded:
    records: list = []
    errors: list = []
    for datagram in datagrams:
        decoded = decode(datagram, level, credentials)
        records += decoded.records
        errors += decoded.errors
    return Decoded(records, errors)


@BOUNDED
@given(records_lists, st.sampled_from([1024, 1452, 65507]))
def test_decode_of_encode_is_identity(records: list, max_size: int) -> None:
    datagrams = encode(records, max_size=max_size)
    assert all(len(d) <= max_size for d in datagrams)
    decoded = decode_all(datagrams)
    assert decoded.errors == []
    assert list(map(exact, decoded.records)) == list(map(exact, records))


short_names = st.text(alphabet="abcxyz.-_", min_size=1, max_size=6)
small_value_lists = st.builds(
    ValueList,
    host=st.sampled_from(["a", "bb"]),
    plugin=short_names,
    plugin_instance=st.sampled_from(["", "0", "1"]),
    type=short_names,
    type_instance=st.sampled_from(["", "user", "idle"]),
    time=st.sampled_from([1.0, 2.5, 1_700_000_000.0]),
    interval=st.sampled_from([0.0, 10.0]),
    values=st.lists(value_pairs, min_size=1, max_size=3).map(tuple),
    security=st.just("none"),
    username=st.just(""),
)


small_notifications = st.builds(
    Notification,
    host=st.sampled_from(["", "a", "bb"]),
    plugin=st.sampled_from(["", "p"]),
    plugin_instance=st.sampled_from(["", "0"]),
    type=st.sampled_from(["", "t"]),
    type_instance=st.sampled_from(["", "x"]),
    time=st.sampled_from([1.0, 2.5]),
    severity=st.sampled_from([1, 2, 4]),
    message=st.text(min_size=1, max_size=10).filter(lambda m: "\0" not in m),
    security=st.just("none"),
    username=st.just(""),
)


@BOUNDED
@given(
    st.lists(st.one_of(small_value_lists, small_notifications), max_size=60),
    st.integers(200, 600),
    st.sampled_from([0, 1, 2]),
)
def test_records_split_across_small_datagrams_round_trip(
    records: list, max_size: int, level: int
) -> None:
    kwargs = {"username": USER, "password": PASSWORD} if level else {}
    datagrams = encode(records, max_size=max_size, security_level=level, **kwargs)
    assert all(len(d) <= max_size for d in datagrams)
    decoded = decode_all(datagrams, level, CREDS if level else None)
    assert decoded.errors == []
    security = ("none", "sign", "encrypt")[level]
    assert {(r.security, r.username) for r in decoded.records} <= {
        (security, USER if level else "")
    }
    stripped = [r._replace(security="none", username="") for r in decoded.records]
    assert list(map(exact, stripped)) == list(map(exact, records))


@BOUNDED
@given(
    st.lists(value_lists, min_size=1, max_size=10),
    st.sampled_from([1, 2]),
    st.binary(min_size=16, max_size=16),
)
def test_sign_and_encrypt_round_trip(records: list, level: int, iv: bytes) -> None:
    datagrams = encode(
        records, security_level=level, username=USER, password=PASSWORD, rng=lambda n: iv
    )
    for accepting_level in range(level + 1):
        decoded = decode_all(datagrams, accepting_level, CREDS)
        assert decoded.errors == []
        assert {r.security for r in decoded.records} == {("none", "sign", "encrypt")[level]}
        stripped = [r._replace(security="none", username="") for r in decoded.records]
        assert list(map(exact, stripped)) == list(map(exact, records))


# ---------------------------------------------------------------------------------------------
# Tampering


@st.composite
def protected_datagram_and_bit(draw) -> tuple[bytes, int, int]:
    records = draw(st.lists(value_lists, min_size=1, max_size=4))
    level = draw(st.sampled_from([1, 2]))
    iv = draw(st.binary(min_size=16, max_size=16))
    datagram = encode(
        records,
        security_level=level,
        username=USER,
        password=PASSWORD,
        rng=lambda n: iv,
        max_size=65507,
    )[0]
    bit = draw(st.integers(0, 8 * len(datagram) - 1))
    return datagram, level, bit


@BOUNDED
@given(protected_datagram_and_bit())
def test_one_flipped_bit_rejects_the_protected_payload(case: tuple[bytes, int, int]) -> None:
    datagram, level, bit = case
    tampered = bytearray(datagram)
    tampered[bit // 8] ^= 1 << (bit % 8)
    tampered = bytes(tampered)
    # At the level it was sent with, nothing survives...
    strict = check_decoded(decode(tampered, level, CREDS))
    assert strict.records == []
    assert strict.errors
    # ...and at level 0 nothing claims a protection it did not get.
    for credentials in (CREDS, None):
        lenient = check_decoded(decode(tampered, 0, credentials))
        assert all(r.security == "none" for r in lenient.records)


@BOUNDED
@given(st.floats(allow_nan=True))
def test_gauges_round_trip_bit_for_bit(value: float) -> None:
    record = ValueList("h", "p", "", "gauge", "", 1.0, 0.0, ((GAUGE, value),))
    (decoded,) = decode(encode([record])[0]).records
    ((_, got),) = decoded.values
    assert struct.pack("<d", got) == struct.pack("<d", value)
    assert math.isnan(got) == math.isnan(value)
