"""The collectd binary network protocol (version 5): datagrams <-> ValueList/Notification records.

What this module is for: `decode()` turns one received datagram into records, the way collectd
5.12's network plugin (src/network.c, `parse_packet`) does on its Listen side; `encode()` packs
records into datagrams the way its Server side (`add_to_buffer`) does, optionally signed or
encrypted. `parse_auth_file()` reads collectd's AuthFile format.

Rules:
- Sans-I/O: bytes in, records out. No sockets, clocks, logging or config. The only module-level
  state is two bounded memos (value-part decoders, identifier strings): pure caches.
- Whatever the bytes, decode() returns the one result shape (bucky.protocol.decoded.Decoded)
  and never raises: a problem ends the current (sub)payload and is reported as a ProtocolError
  in `errors`, while the records decoded before it are kept. `reason` is a stable slug meant
  for self-metrics.
- Semantics follow collectd: a datagram is a sequence of parts (type:u16, length:u16, body;
  the length counts the 4-byte header). Host, time, plugin, ... persist from part to part; each
  values part emits a ValueList and each message part a Notification. A verified or decrypted
  payload is parsed with a fresh state. Unknown part types are skipped by their length
  (CVE-2016-6254); a length < 4 or > remaining ends the payload; zero padding at the end is
  ignored silently (some third-party senders pad).
- Security levels (collectd's `<Listen> SecurityLevel`):
  0 (None): plain parts are accepted. Without credentials (no AuthFile) a signature part is
    skipped and the data after it is read as plain data ("none"), so each value appears once
    (CVE-2017-7401: the part is stepped over, never re-read). With credentials the signature is
    verified; an unknown user, like a bad MAC, rejects the rest of the datagram -- collectd
    5.12 does the same (`-ENOENT` stops `parse_packet`), so an AuthFile at level 0 means
    "signed data must verify". Encrypted parts are decrypted when the user is known.
  1 (Sign): only data inside a verified signature or a decrypted part is accepted; other parts
    are skipped (one "unsigned-data-ignored" error per payload).
  2 (Encrypt): only data inside a decrypted part is accepted; everything else, including
    signature parts outside encryption, is skipped ("unencrypted-data-ignored").
- Nested protection (encryption or signature inside a protected payload) is followed up to
  MAX_NESTING levels; deeper nesting is rejected, so a crafted datagram cannot recurse deeply.
- Records carry `security` ("none", "sign", "encrypt": the strongest protection on the way in)
  and `username` (of the innermost verified part, "" for plain data).
- Hot path: struct.unpack_from on the original buffer, locals only, records built with
  tuple.__new__ (skips the NamedTuple constructor frame), no per-part logging.

Error reasons. These drop one record or part and parsing goes on: incomplete-value-list (time 0
or empty host/plugin/type), incomplete-notification, bad-severity, empty-values (n=0),
unknown-part (reported once per payload). These end the (sub)payload: bad-part-length,
truncated-part, trailing-bytes, bad-string, string-too-long, string-not-terminated,
string-not-utf8, bad-number-length, bad-values-length, unknown-ds-type, bad-signature-length,
bad-encryption-length, bad-username-length, nesting-too-deep (DecodeError); no-credentials,
unknown-user, bad-signature, bad-checksum (AuthError). Below the security level:
unsigned-data-ignored, unencrypted-data-ignored (AuthError, once per payload).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Iterable, Mapping

from bucky.errors import AuthError, DecodeError, EncodeError, ProtocolError
from bucky.protocol.collectd_records import (
    ABSOLUTE,
    COUNTER,
    DERIVE,
    FAILURE,
    GAUGE,
    OKAY,
    WARNING,
    Notification,
    ValueList,
)
from bucky.protocol.collectd_security import (
    ENCRYPTION_HEADER_SIZE,
    ENCRYPTION_PART,
    MAX_USERNAME_BYTES,
    SIGNATURE_HEADER_SIZE,
    SIGNATURE_PART,
    decrypt_payload,
    encrypt_datagram,
    parse_auth_file,
    sign_datagram,
    signature_matches,
)
from bucky.protocol.decoded import Decoded

__all__ = [
    "Credentials",
    "Decoded",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_PORT",
    "MAX_NESTING",
    "decode",
    "encode",
    "parse_auth_file",
]

# username -> password bytes, as read from an AuthFile by parse_auth_file().
Credentials = Mapping[str, bytes]

DEFAULT_PORT = 25826
DEFAULT_MAX_SIZE = 1452  # collectd's MaxPacketSize default: 1500 - 40 (IPv6) - 8 (UDP)
MAX_NESTING = 4  # protection layers followed inside one datagram (collectd senders use 1)

# Part types.
HOST = 0x0000
TIME = 0x0001
PLUGIN = 0x0002
PLUGIN_INSTANCE = 0x0003
TYPE = 0x0004
TYPE_INSTANCE = 0x0005
VALUES = 0x0006
INTERVAL = 0x0007
TIME_HR = 0x0008
INTERVAL_HR = 0x0009
MESSAGE = 0x0100
SEVERITY = 0x0101

NAME_MAX = 128  # DATA_MAX_NAME_LEN: identifier strings, including the NUL
MESSAGE_MAX = 256  # NOTIF_MAX_MSG_LEN
HR_UNITS = 1 << 30  # *_hr parts count 2**-30 seconds

_VALID_SEVERITIES = (FAILURE, WARNING, OKAY)

_unpack_header = struct.Struct(">HH").unpack_from
_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u64 = struct.Struct(">Q").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from
_unpack_gauge = struct.Struct("<d").unpack_from
_pack_header = struct.Struct(">HH").pack
_pack_number = struct.Struct(">HHQ").pack
_new_tuple = tuple.__new__


# ---------------------------------------------------------------------------------------------
# Values parts


_ValuesDecoder = Callable[[bytes, int], tuple]
_BIG_ENDIAN_CODE = {COUNTER: "Q", DERIVE: "q", ABSOLUTE: "Q"}
_value_decoders: dict[bytes, _ValuesDecoder] = {}
_VALUE_DECODERS_MAX = 1024  # distinct type signatures remembered (bounded: input-controlled)


def _make_values_decoder(types: bytes) -> _ValuesDecoder | None:
    """A function (data, offset of the first value) -> ((ds_type, value), ...) for `types`.

    None when a type code is unknown. One struct call when all values share a byte order
    (GAUGE is little-endian, the integer types big-endian), per-value calls otherwise; the
    common widths build their pairs explicitly (tuple(zip(...)) costs about 4x more).
    """
    if any(t > ABSOLUTE for t in types):
        return None
    count = len(types)
    if GAUGE in types and types.count(GAUGE) != count:  # mixed byte orders, e.g. mysql_qcache
        per_value = tuple(
            (t, struct.Struct("<d" if t == GAUGE else ">" + _BIG_ENDIAN_CODE[t]).unpack_from, 8 * i)
            for i, t in enumerate(types)
        )
        return lambda data, off: tuple(
            (t, unpack(data, off + at)[0]) for t, unpack, at in per_value
        )
    if GAUGE in types:
        unpack = struct.Struct(f"<{count}d").unpack_from
    else:
        unpack = struct.Struct(">" + "".join(_BIG_ENDIAN_CODE[t] for t in types)).unpack_from
    if count == 1:
        (t0,) = types
        return lambda data, off: ((t0, unpack(data, off)[0]),)
    if count == 2:
        t0, t1 = types

        def two(data: bytes, off: int) -> tuple:
            v0, v1 = unpack(data, off)
            return ((t0, v0), (t1, v1))

        return two
    if count == 3:
        t0, t1, t2 = types

        def three(data: bytes, off: int) -> tuple:
            v0, v1, v2 = unpack(data, off)
            return ((t0, v0), (t1, v1), (t2, v2))

        return three
    return lambda data, off: tuple(zip(types, unpack(data, off), strict=True))


def _values_decoder(types: bytes) -> _ValuesDecoder:
    found = _make_values_decoder(types)
    if found is None:
        bad = next(t for t in types if t > ABSOLUTE)
        raise DecodeError("unknown-ds-type", f"data source type {bad}")
    if len(_value_decoders) < _VALUE_DECODERS_MAX:
        _value_decoders[types] = found
    return found


# ---------------------------------------------------------------------------------------------
# Decoding


def _string(data: bytes, off: int, length: int, limit: int) -> str:
    """The string of the part at `off`; collectd's parse_part_string plus a UTF-8 check."""
    if length <= 4:
        raise DecodeError("bad-string", "empty string part (no NUL)")
    if length - 4 > limit:
        raise DecodeError("string-too-long", f"{length - 4} bytes, limit {limit}")
    last = off + length - 1
    if data[last]:
        raise DecodeError("string-not-terminated", "string part does not end with NUL")
    raw = data[off + 4 : last]
    nul = raw.find(0)
    if nul >= 0:  # collectd reads a C string: it ends at the first NUL
        raw = raw[:nul]
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DecodeError("string-not-utf8", repr(raw[:40])) from None


# Memo of identifier strings: part body (NUL included) -> str. The same few names recur in
# every datagram; a hit skips the checks and the UTF-8 decode (about 10% of decode time).
# Only valid bodies are stored; input controls the keys, so the memo is bounded.
_names: dict[bytes, str] = {}
_NAMES_MAX = 4096


def _number(data: bytes, off: int, length: int) -> int:
    if length != 12:
        raise DecodeError("bad-number-length", f"number part of length {length}")
    return _unpack_u64(data, off + 4)[0]


def _require_empty_values(data: bytes, off: int, length: int) -> None:
    if length != 6 or data[off + 4] or data[off + 5]:
        raise DecodeError("bad-values-length", f"values part length {length} is not 6+9n")


def _framing_error(data: bytes, off: int, end: int, length: int) -> DecodeError | None:
    """The error for a part header that cannot be followed, or None for trailing zero padding."""
    if data.count(0, off, end) == end - off:
        return None
    if length < 4:
        return DecodeError("bad-part-length", f"part length {length} < 4 at offset {off}")
    return DecodeError(
        "truncated-part", f"part length {length} > {end - off} bytes left (MaxPacketSize?)"
    )


def _identity(data: bytes, off: int, username_length: int) -> str:
    try:
        return data[off : off + username_length].decode()
    except UnicodeDecodeError:
        raise AuthError("unknown-user", "username is not UTF-8") from None


def _password(credentials: Credentials | None, user: str) -> bytes:
    if credentials is None:
        raise AuthError("no-credentials", "protected data but no auth file")
    password = credentials.get(user)
    if password is None:
        raise AuthError("unknown-user", repr(user))
    if isinstance(password, str):
        password = password.encode("utf-8")
    return password


class _Reader:
    """One decode() call: the settings every (sub)payload needs, and the output lists."""

    __slots__ = ("level", "credentials", "records", "errors")

    def __init__(self, level: int, credentials: Credentials | None) -> None:
        self.level = level
        self.credentials = credentials
        self.records: list[ValueList | Notification] = []
        self.errors: list[ProtocolError] = []

    def payload(
        self, data: bytes, off: int, end: int, security: str, username: str, depth: int
    ) -> None:
        """Parse data[off:end], a part sequence, with a fresh state."""
        level = self.level
        if (level == 2 and security != "encrypt") or (level == 1 and security == "none"):
            self._gated_payload(data, off, end, security, username, depth)
        else:
            self._open_payload(data, off, end, security, username, depth)

    def _open_payload(
        self, data: bytes, off: int, end: int, security: str, username: str, depth: int
    ) -> None:
        """The state machine over parts; every part type is honoured."""
        records_append = self.records.append
        errors = self.errors
        decoders = _value_decoders
        names = _names
        unpack_header = _unpack_header
        unpack_u16 = _unpack_u16
        unpack_gauge = _unpack_gauge
        unpack_i64 = _unpack_i64
        unpack_u64 = _unpack_u64
        new_tuple = _new_tuple
        vl_class = ValueList
        host = plugin = plugin_instance = type_ = type_instance = ""
        time_raw = 0
        time = interval = 0.0
        severity = 0
        unknown_seen = False
        last_header = end - 5  # collectd reads parts while more than 4 bytes remain
        try:
            while off <= last_header:
                ptype, length = unpack_header(data, off)
                if length < 4 or off + length > end:
                    error = _framing_error(data, off, end, length)
                    if error is not None:
                        errors.append(error)
                    return
                if ptype == VALUES:
                    if length == 15 and data[off + 5] == 1 and not data[off + 4]:
                        # One value: by far the most common part, decoded inline.
                        ds_type = data[off + 6]
                        if ds_type == GAUGE:
                            values = ((GAUGE, unpack_gauge(data, off + 7)[0]),)
                        elif ds_type == DERIVE:
                            values = ((DERIVE, unpack_i64(data, off + 7)[0]),)
                        elif ds_type == COUNTER or ds_type == ABSOLUTE:
                            values = ((ds_type, unpack_u64(data, off + 7)[0]),)
                        else:
                            raise DecodeError("unknown-ds-type", f"data source type {ds_type}")
                    else:
                        count = (length - 6) // 9
                        if (
                            length < 15
                            or length - 6 != 9 * count
                            or unpack_u16(data, off + 4)[0] != count
                        ):
                            # collectd drops an n=0 value list alone (no type has 0 sources).
                            _require_empty_values(data, off, length)
                            errors.append(DecodeError("empty-values", "values part with n=0"))
                            off += 6
                            continue
                        types = data[off + 6 : off + 6 + count]
                        decoder = decoders.get(types) or _values_decoder(types)
                        values = decoder(data, off + 6 + count)
                    off += length
                    if time_raw and host and plugin and type_:
                        records_append(
                            new_tuple(
                                vl_class,
                                (
                                    host,
                                    plugin,
                                    plugin_instance,
                                    type_,
                                    type_instance,
                                    time,
                                    interval,
                                    values,
                                    security,
                                    username,
                                ),
                            )
                        )
                    else:
                        errors.append(_incomplete_value_list(time_raw, host, plugin, type_))
                elif ptype < VALUES and ptype != TIME:  # host, plugin, type and their instances
                    raw = data[off + 4 : off + length]
                    text = names.get(raw)
                    if text is None:
                        text = _string(data, off, length, NAME_MAX)
                        if len(names) >= _NAMES_MAX:
                            names.clear()
                        names[raw] = text
                    off += length
                    if ptype == TYPE_INSTANCE:
                        type_instance = text
                    elif ptype == TYPE:
                        type_ = text
                    elif ptype == PLUGIN_INSTANCE:
                        plugin_instance = text
                    elif ptype == PLUGIN:
                        plugin = text
                    else:
                        host = text
                elif ptype == TIME_HR:  # collectd sends one before most value lists
                    if length != 12:
                        _number(data, off, length)  # raises the precise error
                    time_raw = unpack_u64(data, off + 4)[0]
                    time = time_raw / HR_UNITS
                    off += 12
                elif ptype == INTERVAL_HR:
                    interval = _number(data, off, length) / HR_UNITS
                    off += length
                elif ptype == TIME:
                    time_raw = _number(data, off, length)
                    time = float(time_raw)
                    off += length
                elif ptype == INTERVAL:
                    interval = float(_number(data, off, length))
                    off += length
                elif ptype == SEVERITY:
                    severity = _number(data, off, length)
                    off += length
                elif ptype == MESSAGE:
                    message = _string(data, off, length, MESSAGE_MAX)
                    off += length
                    if severity not in _VALID_SEVERITIES:
                        errors.append(DecodeError("bad-severity", f"severity {severity}"))
                    elif not time_raw or not message:
                        errors.append(
                            DecodeError("incomplete-notification", "time 0 or empty message")
                        )
                    else:
                        records_append(
                            Notification(
                                host,
                                plugin,
                                plugin_instance,
                                type_,
                                type_instance,
                                time,
                                severity,
                                message,
                                security,
                                username,
                            )
                        )
                elif ptype == SIGNATURE_PART:
                    if self._signed(data, off, end, length, security, depth):
                        return  # the signature covered the rest of this payload
                    off += length  # level 0 without credentials: stepped over, read as plain
                elif ptype == ENCRYPTION_PART:
                    self._encrypted(data, off, length, security, depth)
                    off += length
                else:
                    if not unknown_seen:
                        unknown_seen = True
                        errors.append(DecodeError("unknown-part", f"part type {ptype:#06x}"))
                    off += length
            if off < end and data.count(0, off, end) != end - off:
                errors.append(DecodeError("trailing-bytes", f"{end - off} bytes after parts"))
        except ProtocolError as error:
            errors.append(error)

    def _gated_payload(
        self, data: bytes, off: int, end: int, security: str, username: str, depth: int
    ) -> None:
        """Below the required security level: only protection parts are honoured."""
        errors = self.errors
        accept_signature = self.level == 1
        skipped = False
        try:
            while end - off > 4:
                ptype, length = _unpack_header(data, off)
                if length < 4 or length > end - off:
                    error = _framing_error(data, off, end, length)
                    if error is not None:
                        errors.append(error)
                    break
                if ptype == ENCRYPTION_PART:
                    self._encrypted(data, off, length, security, depth)
                elif ptype == SIGNATURE_PART and accept_signature:
                    self._signed(data, off, end, length, security, depth)
                    break
                else:
                    skipped = True
                off += length
        except ProtocolError as error:
            errors.append(error)
        if skipped:
            if self.level == 2:
                errors.append(AuthError("unencrypted-data-ignored", "SecurityLevel Encrypt"))
            else:
                errors.append(AuthError("unsigned-data-ignored", "SecurityLevel Sign"))

    def _signed(
        self, data: bytes, off: int, end: int, length: int, security: str, depth: int
    ) -> bool:
        """Handle a signature part covering data[off+length:end].

        False when it was stepped over unverified (level 0, no credentials); True when the rest
        of the payload was consumed (verified and parsed); raises when it is rejected.
        """
        if length <= SIGNATURE_HEADER_SIZE:
            raise DecodeError("bad-signature-length", f"signature part of length {length}")
        if self.credentials is None and self.level == 0:
            return False
        user = _identity(data, off + SIGNATURE_HEADER_SIZE, length - SIGNATURE_HEADER_SIZE)
        password = _password(self.credentials, user)
        if depth >= MAX_NESTING:
            raise DecodeError("nesting-too-deep", f"more than {MAX_NESTING} protection layers")
        user_bytes = data[off + SIGNATURE_HEADER_SIZE : off + length]
        payload = memoryview(data)[off + length : end]
        if not signature_matches(data[off + 4 : off + 36], user_bytes, payload, password):
            raise AuthError("bad-signature", f"HMAC-SHA256 mismatch for user {user!r}")
        inner = "encrypt" if security == "encrypt" else "sign"
        self.payload(data, off + length, end, inner, user, depth + 1)
        return True

    def _encrypted(self, data: bytes, off: int, length: int, security: str, depth: int) -> None:
        """Decrypt the encryption part at `off` and parse its payload."""
        if length <= ENCRYPTION_HEADER_SIZE:
            raise DecodeError("bad-encryption-length", f"encryption part of length {length}")
        username_length = _unpack_u16(data, off + 4)[0]
        if username_length == 0 or username_length > length - ENCRYPTION_HEADER_SIZE - 1:
            raise DecodeError("bad-username-length", f"username length {username_length}")
        user = _identity(data, off + 6, username_length)
        password = _password(self.credentials, user)
        if depth >= MAX_NESTING:
            raise DecodeError("nesting-too-deep", f"more than {MAX_NESTING} protection layers")
        iv_at = off + 6 + username_length
        plain = decrypt_payload(data[iv_at : iv_at + 16], data[iv_at + 16 : off + length], password)
        if plain is None:
            raise AuthError("bad-checksum", f"SHA-1 mismatch after decryption, user {user!r}")
        self.payload(plain, 0, len(plain), "encrypt", user, depth + 1)


def _incomplete_value_list(time_raw: int, host: str, plugin: str, type_: str) -> DecodeError:
    missing = [
        name
        for name, value in (("time", time_raw), ("host", host), ("plugin", plugin), ("type", type_))
        if not value
    ]
    return DecodeError("incomplete-value-list", "missing " + ", ".join(missing))


def decode(
    data: bytes, security_level: int = 0, credentials: Credentials | None = None
) -> Decoded[ValueList | Notification]:
    """Decode one datagram; see the module docstring for the rules.

    `security_level` is 0 (None), 1 (Sign) or 2 (Encrypt); `credentials` maps users to
    passwords (None = no auth file). Never raises for any `data`.
    """
    if security_level not in (0, 1, 2):
        raise EncodeError(f"security_level must be 0, 1 or 2, not {security_level!r}")
    if type(data) is not bytes:
        data = bytes(data)
    reader = _Reader(security_level, credentials)
    reader.payload(data, 0, len(data), "none", "", 0)
    return Decoded(reader.records, reader.errors)


# ---------------------------------------------------------------------------------------------
# Encoding


def _string_part(part_type: int, text: str, limit: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise EncodeError(f"{what} must be a str, not {type(text).__name__}")
    raw = text.encode("utf-8")
    if b"\0" in raw:
        raise EncodeError(f"{what} contains a NUL character")
    if len(raw) + 1 > limit:
        raise EncodeError(f"{what} is {len(raw)} bytes; at most {limit - 1} fit")
    return _pack_header(part_type, len(raw) + 5) + raw + b"\0"


def _hr(seconds: float, what: str) -> int:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise EncodeError(f"{what} must be a finite number >= 0, not {seconds!r}")
    raw = round(seconds * HR_UNITS)
    if raw >= 1 << 64:
        raise EncodeError(f"{what} {seconds!r} does not fit in 64 bits of 2**-30 s")
    return raw


_VALUE_FORMATS = {COUNTER: ">Q", GAUGE: "<d", DERIVE: ">q", ABSOLUTE: ">Q"}


def _values_part(values: tuple) -> bytes:
    count = len(values)
    if count == 0:
        raise EncodeError("a value list needs at least one value")
    if 6 + 9 * count > 0xFFFF:
        raise EncodeError(f"{count} values do not fit in one part")
    types = bytearray()
    body = bytearray()
    for item in values:
        ds_type, value = item
        fmt = _VALUE_FORMATS.get(ds_type)
        if fmt is None:
            raise EncodeError(f"unknown data source type {ds_type!r}")
        if ds_type == GAUGE:
            if not isinstance(value, (int, float)):
                raise EncodeError(f"GAUGE value must be a number, not {value!r}")
            value = float(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            raise EncodeError(f"{ds_type=} value must be an int, not {value!r}")
        try:
            body += struct.pack(fmt, value)
        except (struct.error, OverflowError):
            raise EncodeError(f"value {value!r} out of range for {ds_type=}") from None
        types.append(ds_type)
    return _pack_header(VALUES, 6 + 9 * count) + struct.pack(">H", count) + types + body


# A record to write: the (part type, value, part bytes) of its identifier fields in wire order,
# and its last part (values or message), which is always written.
_Fields = list[tuple[int, object, bytes]]


class _Writer:
    """Packs records into datagrams, writing identifier parts only when they change."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.datagrams: list[bytes] = []
        self.buffer = bytearray()
        self.state: dict[int, object] = {}

    def add(self, fields: _Fields, tail: bytes) -> None:
        parts = self._changed(fields)
        parts.append(tail)
        size = sum(map(len, parts))
        if len(self.buffer) + size > self.limit:
            self.flush()
            parts = self._changed(fields)
            parts.append(tail)
            size = sum(map(len, parts))
            if size > self.limit:
                raise EncodeError(f"a record of {size} bytes does not fit in {self.limit} bytes")
        state = self.state
        for part_type, value, _ in fields:
            state[part_type] = value
        self.buffer += b"".join(parts)

    def _changed(self, fields: _Fields) -> list[bytes]:
        state = self.state
        # A fresh datagram starts from collectd's zeroed state: "" strings, 0 numbers.
        return [
            part
            for part_type, value, part in fields
            if state.get(part_type, "" if part_type in _STRING_PARTS else 0) != value
        ]

    def flush(self) -> None:
        if self.buffer:
            self.datagrams.append(bytes(self.buffer))
        self.buffer = bytearray()
        self.state = {}


_STRING_PARTS = frozenset({HOST, PLUGIN, PLUGIN_INSTANCE, TYPE, TYPE_INSTANCE})


def _name_field(part_type: int, text: str, what: str) -> tuple[int, object, bytes]:
    return (part_type, text, _string_part(part_type, text, NAME_MAX, what))


def _number_field(part_type: int, value: int) -> tuple[int, object, bytes]:
    return (part_type, value, _pack_number(part_type, 12, value))


def _value_list_fields(record: ValueList) -> tuple[_Fields, bytes]:
    host, plugin, plugin_instance, type_, type_instance, time, interval, values = record[:8]
    for what, text in (("host", host), ("plugin", plugin), ("type", type_)):
        if not text:
            raise EncodeError(f"a value list needs a non-empty {what}")
    time_raw = _hr(time, "time")
    if not time_raw:
        raise EncodeError("a value list needs a time > 0")
    # collectd's order: host, time, interval, plugin, plugin instance, type, type instance.
    fields = [
        _name_field(HOST, host, "host"),
        _number_field(TIME_HR, time_raw),
        _number_field(INTERVAL_HR, _hr(interval, "interval")),
        _name_field(PLUGIN, plugin, "plugin"),
        _name_field(PLUGIN_INSTANCE, plugin_instance, "plugin_instance"),
        _name_field(TYPE, type_, "type"),
        _name_field(TYPE_INSTANCE, type_instance, "type_instance"),
    ]
    return fields, _values_part(tuple(values))


def _notification_fields(record: Notification) -> tuple[_Fields, bytes]:
    host, plugin, plugin_instance, type_, type_instance, time, severity, message = record[:8]
    if severity not in _VALID_SEVERITIES:
        raise EncodeError(f"severity must be one of {_VALID_SEVERITIES}, not {severity!r}")
    time_raw = _hr(time, "time")
    if not time_raw:
        raise EncodeError("a notification needs a time > 0")
    if not message:
        raise EncodeError("a notification needs a non-empty message")
    # collectd's order: time, severity, host, plugin, plugin instance, type, type instance.
    fields = [
        _number_field(TIME_HR, time_raw),
        _number_field(SEVERITY, severity),
        _name_field(HOST, host, "host"),
        _name_field(PLUGIN, plugin, "plugin"),
        _name_field(PLUGIN_INSTANCE, plugin_instance, "plugin_instance"),
        _name_field(TYPE, type_, "type"),
        _name_field(TYPE_INSTANCE, type_instance, "type_instance"),
    ]
    return fields, _string_part(MESSAGE, message, MESSAGE_MAX, "message")


def encode(
    records: Iterable[ValueList | Notification],
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    security_level: int = 0,
    username: str | None = None,
    password: str | bytes | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> list[bytes]:
    """Pack value lists and notifications into datagrams of at most `max_size` bytes.

    Like collectd's sender: identifier parts are written only when they differ from the
    previous record in the same datagram, time and interval as *_hr parts, and each datagram
    is signed (level 1) or encrypted (level 2, IV from `rng(16)`) with room reserved for that
    header. Raises ValueError for a record that decode() would reject or that cannot fit.
    """
    if security_level not in (0, 1, 2):
        raise EncodeError(f"security_level must be 0, 1 or 2, not {security_level!r}")
    if not 64 <= max_size <= 0xFFFF:
        raise EncodeError(f"max_size must be within 64..65535, not {max_size!r}")
    user_bytes = b""
    key = b""
    reserve = 0
    if security_level:
        if not username or password is None or password == "" or password == b"":
            raise EncodeError("signing or encrypting needs a username and a password")
        user_bytes = username.encode("utf-8")
        if len(user_bytes) > MAX_USERNAME_BYTES:
            raise EncodeError(f"username longer than {MAX_USERNAME_BYTES} bytes")
        key = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        header = SIGNATURE_HEADER_SIZE if security_level == 1 else ENCRYPTION_HEADER_SIZE
        reserve = header + len(user_bytes)
    writer = _Writer(max_size - reserve)
    for record in records:
        if isinstance(record, ValueList):
            fields, tail = _value_list_fields(record)
        elif isinstance(record, Notification):
            fields, tail = _notification_fields(record)
        else:
            raise EncodeError(f"cannot encode {type(record).__name__}")
        writer.add(fields, tail)
    writer.flush()
    if security_level == 1:
        return [sign_datagram(payload, user_bytes, key) for payload in writer.datagrams]
    if security_level == 2:
        return [encrypt_datagram(p, user_bytes, key, rng(16)) for p in writer.datagrams]
    return writer.datagrams
