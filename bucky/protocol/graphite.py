"""Graphite (carbon) wire formats: plaintext lines and pickle frames, both ways. Sans-I/O.

Plaintext: one `path value timestamp\\n` per point. Values keep their type: ints as ints, floats as
`repr` (the shortest text that reads back to the same float, e.g. `0.1`, `-5e-07`, `1e+300`);
timestamps are whole seconds (truncated, as carbon floors them anyway). A path never contains
whitespace: that would split or inject lines, so `clean_path` turns it into "_".

Pickle: a frame is a 4-byte big-endian length and a protocol-2 pickle of
`[(path, (timestamp, value)), ...]` made of builtins only (str, int, float, list, tuple): what
carbon's own client sends and what its safe unpickler accepts. Decoding uses an unpickler that
refuses every global (carbon allows two harmless Python-2 names; the points format needs none) and
then checks the shape of each entry.

The decoders return the one result shape (bucky.protocol.decoded.Decoded) and never raise for
bad bytes: a bad line, entry or frame is one DecodeError in `errors`, the rest still decodes.
Their cost is bounded by the input's size: the bad lines (or pickle entries) of one call that
fail for the same reason share one DecodeError object, so `len(errors)` counts them without a
message or traceback per line. Numbers are refused where the rest of Bucky could not hold them:
a value must fit a float (an int past 1.8e308, or digits that overflow to infinity, are
"bad-value"; a spelled-out inf passes, as in carbon), a timestamp must be finite and within an
int64 (MAX_TIMESTAMP).

`format_plaintext_batch` is the relay's hot path: one `%` over a template cached per batch length
and one join, with a per-line fallback only when a batch holds something unusual.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import reprlib
import struct
import sys
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from bucky.errors import DecodeError, EncodeError, ProtocolError
from bucky.protocol.decoded import Decoded

PICKLE_PROTOCOL = 2  # carbon's own client uses 2; Python-2 carbons cannot read more
MAX_PICKLE_FRAME = 1024 * 1024  # carbon's PICKLE_RECEIVER_MAX_LENGTH default
BAD_PICKLE = "bad-pickle"  # a frame's payload is not a safe pickle of a list: the whole frame
FRAME_TOO_LARGE = "frame-too-large"  # a frame header announces more than the maximum
_HEADER = struct.Struct("!L")

Point = tuple[str, int | float, int | float]  # (path, value, timestamp), as a test or sink sees it
PicklePoint = tuple[str, tuple[int | float, int | float]]  # (path, (timestamp, value)) on the wire

# Every character str.split() splits on (str.isspace(): ASCII whitespace, the information
# separators, NEL, no-break and typographic spaces, line and paragraph separators), spelled out
# so that importing stays cheap; tests/protocol/test_graphite.py checks it against str.isspace()
# over the whole of Unicode. Carbon 1.x splits its lines with str.split(), so any of these inside
# a path would split the line there (or, at the end of a line, inject the next one).
WHITESPACE = frozenset(
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# For str patterns \s is str.isspace(): this matches WHITESPACE and NUL exactly (tested).
_PATH_UNSAFE = re.compile(r"[\s\x00]")


def clean_path(path: str) -> str:
    """A path safe for the line protocol: whitespace (which would split or inject lines) and NUL
    -> "_". Every Graphite path of every input passes here once (outputs/paths.py caches it)."""
    if " " not in path and path.isprintable():  # the usual path; both checks run in C
        return path  # every WHITESPACE character but " ", and NUL, is unprintable
    return _PATH_UNSAFE.sub("_", path)


def format_value(value: object) -> str | None:
    """Text for one value, or None when it is not a number Graphite can store."""
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is int:
        try:
            return str(value)
        except ValueError:  # more digits than int->str allows: send it as a float, if it is one
            pass
    if kind is bool:
        return "1" if value else "0"
    try:
        number = float(value)  # type: ignore[arg-type]  # Decimal, numpy scalars, "5" ...
    except (TypeError, ValueError, OverflowError):
        return None
    return repr(number)


def format_timestamp(timestamp: object) -> str | None:
    try:
        seconds = int(timestamp)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return str(seconds)


def format_line(path: str, value: object, timestamp: object) -> str | None:
    """One plaintext line with its newline, or None when value or timestamp is unusable."""
    text = format_value(value)
    ts = format_timestamp(timestamp)
    if text is None or ts is None:
        return None
    return f"{path} {text} {ts}\n"


def format_plaintext(points: Iterable[Point]) -> bytes:
    """Lines for (path, value, timestamp) points; unusable points are left out."""
    lines = [format_line(clean_path(p), v, t) for p, v, t in points]
    return "".join(line for line in lines if line is not None).encode()


_templates: dict[int, str] = {}
_value = itemgetter(2)
_timestamp = itemgetter(3)
_PLAIN_NUMBERS = frozenset((int, float))


def _template(count: int) -> str:
    template = _templates.get(count)
    if template is None:
        if len(_templates) > 64:  # batch lengths vary little; do not keep every one ever seen
            _templates.clear()
        template = _templates[count] = "%s%s %d\n" * count
    return template


def format_plaintext_batch(batch: Sequence[tuple], prefixes: Sequence[str]) -> tuple[str, int]:
    """Lines for a batch of samples `(host, name, value, timestamp)`; returns (text, skipped).

    `prefixes[i]` is sample i's cleaned path followed by one space (the caller keeps them in a
    cache). Samples whose value or timestamp is unusable are skipped and counted.

    A fast path of `format_line`: plain int/float values are formatted by one %-template per
    batch, anything else line by line; a property test holds the text equal to `format_line`'s
    (tests/protocol/test_graphite.py: test_batch_formatting_matches_line_by_line).
    """
    count = len(batch)
    if not count:
        return "", 0
    values = list(map(_value, batch))
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        args: list[object] = [None] * (3 * count)
        args[0::3] = prefixes
        args[1::3] = values
        args[2::3] = map(_timestamp, batch)
        try:
            return _template(count) % tuple(args), 0
        except (TypeError, ValueError, OverflowError):
            pass  # a bad timestamp or an enormous int somewhere: go line by line
    lines = []
    for prefix, sample in zip(prefixes, batch, strict=True):
        line = format_line(prefix[:-1], sample[2], sample[3])
        if line is not None:
            lines.append(line)
    return "".join(lines), count - len(lines)


# --- plaintext decoding (the carbon input, the spool, fake carbon, tests, tools) -----------------

FIELDS, NOT_UTF8 = "fields", "not-utf8"
BAD_VALUE, BAD_TIMESTAMP = "bad-value", "bad-timestamp"
# Numbers beyond these are refused, never forwarded: a value must be one a float can hold (an int
# of 400 digits would make every consumer's float() raise), a timestamp one an int64 holds (what
# carbon-c-relay, go-carbon and whisper's consumers store; -1 still means "now").
_FLOAT_MAX = sys.float_info.max
MAX_TIMESTAMP = 2**63


def _number(text: str) -> int | float | None:
    """A number as carbon reads it (whatever float() reads; ints stay ints), or None when it is
    not one or is beyond a float: an int past 1.8e308, or digits that overflow to infinity (only
    a spelled-out "inf" is infinite, as in carbon)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if number in (math.inf, -math.inf) and "n" not in text.lower():
        return None  # "1e400", or more digits than int() takes: not a number a float holds
    return number


def _parse_fields(fields: list[str]) -> Point | str:
    """The point of one line's fields, or the reason it is bad."""
    if len(fields) != 3:
        return FIELDS
    path, value_text, timestamp_text = fields
    value = _number(value_text)
    if value is None or (type(value) is int and not -_FLOAT_MAX <= value <= _FLOAT_MAX):
        return BAD_VALUE
    timestamp = _number(timestamp_text)
    if timestamp is None or not -MAX_TIMESTAMP < timestamp < MAX_TIMESTAMP:  # also inf and nan
        return BAD_TIMESTAMP
    return path, value, timestamp


def parse_plaintext_line(line: bytes) -> Point:
    """`path value timestamp` (any whitespace between, as carbon's receivers split it).

    Accepts what carbon accepts (every number Python's float() reads; ints stay ints) and raises
    DecodeError with the reason: "not-utf8", "fields" (not three fields), "bad-value" (not a
    number, or beyond a float), "bad-timestamp" (not a number, not finite, or beyond an int64)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(NOT_UTF8, f"{line[:80]!r}") from None
    point = _parse_fields(text.split())
    if type(point) is str:
        raise DecodeError(point, f"{line[:80]!r}")
    return point  # type: ignore[return-value]


NAN = "nan"  # decode_plaintext_lines with `now`: a NaN value, left out as carbon's receivers do
_POINTS = object()  # decode_plaintext_lines without `sample_host`: records are points


def decode_plaintext_lines(lines: Sequence[bytes], now: float | None = None,
                           sample_host: object = _POINTS) -> Decoded[Any]:
    """The points of complete lines (without their newlines; blank lines are skipped), exactly as
    `parse_plaintext_line` reads each, and one error per bad line.

    With `now`, carbon's receiver rules apply too: a timestamp of -1 (int(t) == -1) is `now`, and
    a line with a NaN value is left out as an error with reason NAN (dropped, not bad). With
    `sample_host`, each record is the sample `(sample_host, path, value, timestamp)`
    (bucky.sample's shape), built at once rather than copied from a point.

    The relay's hot path: the common case (UTF-8, three fields, plain numbers in range) is read in
    bulk, anything else by `_parse_fields` for its reason (a property test holds the bulk path
    equal to `parse_plaintext_line`: test_the_bulk_decoder_reads_each_line_as_parse_plaintext_line).
    Bad lines with the same reason share
    one DecodeError object (the first one's text): `len(errors)` counts them, and a flood of bad
    lines costs no exception, message or traceback per line."""
    try:
        texts: Sequence[str] | Sequence[bytes] = b"\n".join(lines).decode("utf-8").split("\n")
        utf8 = True
    except UnicodeDecodeError:
        texts, utf8 = lines, False
    records: list[Any] = []
    errors: list[ProtocolError] = []
    append = records.append
    shared: dict[str, ProtocolError] = {}
    shaped = sample_host is not _POINTS
    fmax, tmax = _FLOAT_MAX, MAX_TIMESTAMP
    tmin = -tmax if now is None else -1  # with `now`, -1 and below go the slow way
    for text in texts:
        if utf8:
            fields = text.split()  # type: ignore[assignment]
            if not fields:
                continue
            if len(fields) == 3:
                path, v, t = fields
                try:
                    value = int(v) if v.isdecimal() else float(v) if "." in v else _number(v)
                    timestamp = int(t) if t.isdecimal() else float(t) if "." in t else _number(t)
                    # None raises TypeError; inf, nan and huge numbers fail and go the slow way
                    if -fmax <= value <= fmax and tmin < timestamp < tmax:  # type: ignore[operator]
                        if shaped:
                            append((sample_host, path, value, timestamp))
                        else:
                            append((path, value, timestamp))
                        continue
                except (ValueError, TypeError):
                    pass
            point = _parse_fields(fields)  # type: ignore[arg-type]
        else:
            try:
                fields = text.decode("utf-8").split()  # type: ignore[union-attr]
            except UnicodeDecodeError:
                point = NOT_UTF8
            else:
                if not fields:
                    continue
                point = _parse_fields(fields)
        if type(point) is not str and now is not None:
            path, value, timestamp = point  # type: ignore[misc]
            if value != value:
                point = NAN
            elif -2 < timestamp <= -1:
                point = (path, value, now)
        if type(point) is str:
            error = shared.get(point)  # type: ignore[arg-type]
            if error is None:
                line = text.encode() if utf8 else text  # type: ignore[union-attr]
                error = shared[point] = DecodeError(point, f"{line[:80]!r}")  # type: ignore[index]
            errors.append(error)
        elif shaped:
            append((sample_host, *point))
        else:
            append(point)
    return Decoded(records, errors)


def decode_plaintext(buffer: bytes) -> Decoded[Point]:
    """Every complete line of `buffer` as `decode_plaintext_lines` reads them, and the incomplete
    last line as `rest`."""
    *lines, rest = bytes(buffer).split(b"\n")
    decoded = decode_plaintext_lines(lines)
    return Decoded(decoded.records, decoded.errors, rest)


# --- pickle frames -------------------------------------------------------------------------------


def _builtin_number(value: object) -> int | float | None:
    kind = type(value)
    if kind is int or kind is float:
        return value  # type: ignore[return-value]
    if kind is bool:
        return int(value)  # type: ignore[arg-type]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number


def pickle_point(path: str, timestamp: object, value: object) -> PicklePoint:
    """`(path, (timestamp, value))` made of plain str/int/float, or ValueError.

    A numpy float, a Decimal or a str subclass would pickle as a class reference, and one class
    reference makes carbon's safe unpickler refuse the whole message: convert them here.
    """
    ts = _builtin_number(timestamp)
    number = _builtin_number(value)
    if ts is None or number is None:
        raise EncodeError(f"not a number in pickle point {path!r}: {timestamp!r}, {value!r}")
    return (path if type(path) is str else str(path), (ts, number))


def encode_pickle(points: Iterable[PicklePoint]) -> bytes:
    """One frame for `[(path, (timestamp, value)), ...]` (converted by `pickle_point`)."""
    clean = [pickle_point(path, timestamp, value) for path, (timestamp, value) in points]
    payload = pickle.dumps(clean, protocol=PICKLE_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def encode_pickle_trusted(points: list[PicklePoint]) -> bytes:
    """`encode_pickle` for points the caller built from plain str/int/float only (hot path)."""
    payload = pickle.dumps(points, protocol=PICKLE_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class _AllowListUnpickler(pickle.Unpickler):
    """Refuses every global: the points format is lists, tuples, str and numbers only."""

    SAFE_GLOBALS: dict[str, frozenset[str]] = {}

    def find_class(self, module: str, name: str) -> object:
        if name in self.SAFE_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _unpickle(payload: bytes) -> object:
    try:
        return _AllowListUnpickler(io.BytesIO(payload), encoding="utf-8").load()
    except RecursionError:
        raise DecodeError(BAD_PICKLE, "nested too deeply") from None
    except Exception as exc:  # pickle raises nearly anything on hostile bytes
        raise DecodeError(BAD_PICKLE, f"{type(exc).__name__}: {exc}") from None


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # repr() of an int past 4,300 digits raises
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_short = _ShortRepr()
_short.maxlevel = 3  # never a recursive repr of a hostile, deeply nested payload
_short.maxstring = _short.maxother = 80


def _wire_number(value: object) -> int | float | None:
    """A pickled timestamp or value as a number, or None: carbon's float() of it, ints kept."""
    kind = type(value)
    if kind is int:
        return value if -_FLOAT_MAX <= value <= _FLOAT_MAX else None  # type: ignore[return-value,operator]
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is bool:
        return int(value)  # type: ignore[arg-type]
    if kind is str or kind is bytes:  # statsd's hand-written pickles carry numbers as text
        try:
            number = float(value)  # type: ignore[arg-type]
        except ValueError:
            return None
        return None if number in (math.inf, -math.inf) and b"n" not in _lower(value) else number
    return None


def _lower(text: object) -> bytes:
    return text.lower().encode() if type(text) is str else text.lower()  # type: ignore[union-attr]


def _check_point(entry: object) -> PicklePoint | str:
    """The point of one entry, or what is wrong with it (the text of its error)."""
    if type(entry) not in (tuple, list) or len(entry) != 2:  # type: ignore[arg-type]
        return "expected (path, (timestamp, value))"
    path, datapoint = entry  # type: ignore[misc]
    if type(path) is bytes:
        try:
            path = path.decode("utf-8")
        except UnicodeDecodeError:
            return "path is not UTF-8"
    if type(path) is not str or type(datapoint) not in (tuple, list) or len(datapoint) != 2:
        return "expected (path, (timestamp, value))"
    timestamp, value = map(_wire_number, datapoint)
    if timestamp is None or value is None:
        return "timestamp and value must be numbers a float holds"
    if not -MAX_TIMESTAMP < timestamp < MAX_TIMESTAMP:  # also inf and nan
        return "timestamp out of range (|t| < 2**63)"
    return (path, (timestamp, value))


_NOTHING = object()  # no entry checked yet


def decode_pickle_payload(payload: bytes) -> Decoded[PicklePoint]:
    """One frame's payload as carbon's pickle receiver reads it: entries that are not
    `(path, (number, number))` are skipped (one "bad-point" error each), the others kept. A
    payload that as a whole is not a safe pickle of a list gives no points and one "bad-pickle"
    error.

    The cost is bounded by the payload's size, not by what it holds: every bad entry shares one
    DecodeError (describing the first), so `len(errors)` counts them without an object, message
    or traceback per entry; an entry the pickle references again (its memo makes one 1 MiB frame
    hold ~524k references to one entry) is checked once."""
    try:
        obj = _unpickle(payload)
    except DecodeError as exc:
        return Decoded([], [exc])
    if type(obj) is not list:
        return Decoded([], [DecodeError(BAD_PICKLE, f"expected a list, got {type(obj).__name__}")])
    points: list[PicklePoint] = []
    errors: list[ProtocolError] = []
    error: DecodeError | None = None
    last: object = _NOTHING
    checked: PicklePoint | str = ""
    for entry in obj:
        if entry is not last:
            last, checked = entry, _check_point(entry)
        if type(checked) is str:
            if error is None:
                error = DecodeError("bad-point", f"{checked}: {_short.repr(entry)}")
            errors.append(error)
        else:
            points.append(checked)  # type: ignore[arg-type]
    return Decoded(points, errors)


def _frames(
    buffer: bytes | bytearray, max_frame: int
) -> tuple[list[bytes], int, DecodeError | None]:
    """The payloads of the complete frames at the start of `buffer`, the offset after them, and
    the error of an oversized frame header found there (which ends the framing)."""
    payloads: list[bytes] = []
    offset = 0
    size = len(buffer)
    while size - offset >= _HEADER.size:
        (length,) = _HEADER.unpack_from(buffer, offset)
        if length > max_frame:
            return payloads, offset, DecodeError(FRAME_TOO_LARGE, f"{length} bytes > {max_frame}")
        end = offset + _HEADER.size + length
        if end > size:
            break
        payloads.append(bytes(buffer[offset + _HEADER.size : end]))
        offset = end
    return payloads, offset, None


def split_frames(buffer: bytearray, max_frame: int = MAX_PICKLE_FRAME) -> list[bytes]:
    """Remove every complete frame from `buffer` (in place) and return their payloads: the
    framing step of a pickle receiver, which decodes each with `decode_pickle_payload`.

    Raises DecodeError("frame-too-large") as soon as a header announces more than `max_frame`
    bytes (the stream cannot be trusted past it), so a receiver never holds more than
    `max_frame` + 4 unframed bytes."""
    payloads, offset, error = _frames(buffer, max_frame)
    del buffer[:offset]
    if error is not None:
        raise error
    return payloads


def decode_pickle_frames(buffer: bytes, max_frame: int = MAX_PICKLE_FRAME) -> Decoded[PicklePoint]:
    """Every complete frame in `buffer`, each decoded as `decode_pickle_payload` does: the
    points in order, their errors, and the incomplete last frame as `rest`.

    A header announcing more than `max_frame` bytes ends decoding with a "frame-too-large" error
    (after the errors of the frames before it); `rest` then holds everything from that header on.
    """
    payloads, offset, error = _frames(buffer, max_frame)
    points: list[PicklePoint] = []
    errors: list[ProtocolError] = []
    for payload in payloads:
        decoded = decode_pickle_payload(payload)
        points.extend(decoded.records)
        errors.extend(decoded.errors)
    if error is not None:
        errors.append(error)
    return Decoded(points, errors, bytes(buffer[offset:]))


__all__ = [
    "BAD_PICKLE",
    "FRAME_TOO_LARGE",
    "MAX_PICKLE_FRAME",
    "MAX_TIMESTAMP",
    "NAN",
    "PICKLE_PROTOCOL",
    "PicklePoint",
    "Point",
    "ProtocolError",
    "WHITESPACE",
    "clean_path",
    "decode_pickle_frames",
    "decode_pickle_payload",
    "decode_plaintext",
    "decode_plaintext_lines",
    "encode_pickle",
    "encode_pickle_trusted",
    "format_line",
    "format_plaintext",
    "format_plaintext_batch",
    "format_timestamp",
    "format_value",
    "parse_plaintext_line",
    "pickle_point",
    "split_frames",
]
