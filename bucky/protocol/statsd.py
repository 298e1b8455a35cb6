"""StatsD / DogStatsD line protocol: text in, metric calls out. Sans-I/O.

Grammar (compatible with the reference statsd/statsd server for every line it accepts):

    line   = name ":" group *(":" group) *("|" field)     LF or CRLF separated, blank lines ignored
    group  = value "|" type ["|@" rate]                   type: c g ms h d s
    field  = "#" tags | "@" rate | "T" unix-seconds | "c:" container | "e:" data | "card:" x

- Tags: DogStatsD `#k:v,k2` (or `k=v`) and Graphite-style tags inside the name (`name;k=v`). A tag
  without a value gets the value "true" (Graphite rejects empty values; Telegraf does the same).
- Names, tag names and tag values are sanitized as the reference does: runs of whitespace -> "_",
  "/" -> "-", then everything outside [A-Za-z0-9_.-] is dropped.
- A series is identified by its *key*: the Graphite 1.1 form `name;k1=v1;k2=v2`, tags sorted by name
  (last value wins on duplicates). Sanitising guarantees that ";" and "=" only appear as separators.
- Values: finite decimal numbers (no NaN/inf, no "_" digit separators, ASCII only); timings are
  >= 0; `+N`/`-N` on a gauge is a delta; a set member is any text (empty -> "0", as the reference).
- Sample rate: a positive finite number; it scales counters and the count of timings.
- DogStatsD events (`_e{...`) and service checks (`_sc|...`) are recognised and counted, not parsed.
- Anything else is a bad line, reported with a reason slug; other groups and lines are still used.

Deliberate differences from the reference (which treats any unknown type as a counter): unknown
types, rate 0, hex/Infinity values and unknown fields are bad lines; `h` and `d` are timings (the
reference counts them); DogStatsD fields are understood; blank-only lines are ignored, not bad.
The `|T` timestamp is checked and kept in records; aggregation ignores it (interval = arrival).

Rules: no sockets, clocks, logging or config. Whatever the input, the parser reports metrics, bad
lines and events through the visitor and never raises (Hypothesis-tested).

Speed: `StatsdParser.feed` handles the common single-group forms (`name:v|t`, with `|@rate` and/or
`|#tags`) on a fast path that calls the visitor directly without building records, using memo
tables filled by the same helper functions the general path uses; anything it does not recognise
exactly goes to the general path. A property test checks that both paths make identical calls.
`parse()` is the convenience API: it returns the one result shape (bucky.protocol.decoded.Decoded)
of StatsdMetric and StatsdEvent records.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from bucky.errors import DecodeError, ProtocolError
from bucky.protocol.decoded import Decoded


class Kind(enum.Enum):
    COUNTER = "c"
    GAUGE = "g"  # set the gauge to the value
    GAUGE_DELTA = "g+-"  # add the signed value to the gauge
    TIMER = "ms"
    HISTOGRAM = "h"  # DogStatsD; aggregated as a timing
    DISTRIBUTION = "d"  # DogStatsD; aggregated as a timing
    SET = "s"



Tags = tuple[tuple[str, str], ...]


class StatsdMetric(NamedTuple):
    name: str
    value: float | str  # str only for Kind.SET
    kind: Kind
    rate: float
    tags: Tags
    timestamp: int | None  # DogStatsD `|T` extension, else None


class StatsdEvent(NamedTuple):
    """A DogStatsD event (`_e{...`) or service check (`_sc|...`): recognised, not aggregated."""

    kind: str  # "event" or "service_check"


class MetricVisitor(Protocol):
    """What the parser calls; `key` is the canonical series key `name[;k=v...]`."""

    def counter(self, key: str, value: float, rate: float, timestamp: int | None) -> None: ...

    def timer(
        self, key: str, value: float, rate: float, timestamp: int | None, kind: Kind
    ) -> None: ...

    def gauge(
        self, key: str, value: float, rate: float, timestamp: int | None, delta: bool
    ) -> None: ...

    def set_member(self, key: str, member: str, rate: float, timestamp: int | None) -> None: ...

    def bad_line(self, reason: str, line: str) -> None: ...

    def event(self, kind: str) -> None: ...  # "event" or "service_check"


# Bad-line reasons (stable slugs: they become self-metric names).
NO_VALUE = "no-value"  # `name` without ":value|type"
NO_TYPE = "no-type"  # a value without "|type"
BAD_TYPE = "bad-type"
BAD_NAME = "bad-name"  # the name is empty once sanitized
BAD_VALUE = "bad-value"
NEGATIVE_TIMING = "negative-timing"
BAD_RATE = "bad-rate"
BAD_TIMESTAMP = "bad-timestamp"
BAD_FIELD = "bad-field"
REASONS = (
    NO_VALUE,
    NO_TYPE,
    BAD_TYPE,
    BAD_NAME,
    BAD_VALUE,
    NEGATIVE_TIMING,
    BAD_RATE,
    BAD_TIMESTAMP,
    BAD_FIELD,
)

_TIMING_BY_CODE = {"ms": Kind.TIMER, "h": Kind.HISTOGRAM, "d": Kind.DISTRIBUTION}
_SIMPLE_TYPES = frozenset(("c", "ms", "g", "s", "h", "d"))
_WHITESPACE = re.compile(r"\s+")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")
_EXTENSION_FIELDS = ("c:", "e:", "card:")  # DogStatsD container id, external data, cardinality
_MAX_TIMESTAMP_DIGITS = 12  # int() of huge digit strings is slow (and limited); 12 is plenty
_DEFAULT_MEMO_SIZE = 1 << 18
# Numbers repeat far less than names: timer values are mostly distinct, and a memo as big as the
# name memo held ~34 MB of strings and floats under such traffic. Frequent ones ("1") stay hot.
_NUMBER_MEMO_SIZE = 1 << 12


def sanitize(text: str) -> str:
    """The reference's key sanitizing: whitespace runs -> "_", "/" -> "-", drop the rest."""
    return _NOT_NAME_CHAR.sub("", _WHITESPACE.sub("_", text).replace("/", "-"))


def parse_number(text: str) -> float | None:
    """A finite float from ASCII decimal text, or None (float() alone accepts too much)."""
    try:
        value = float(text)
    except ValueError:
        return None
    # value - value is 0.0 only for finite values; "_" and non-ASCII digits are float()-isms
    if value - value != 0.0 or "_" in text or not text.isascii():
        return None
    return value


def _parse_timestamp(text: str) -> int | None:
    if not (0 < len(text) <= _MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value > 0 else None


def _parse_tag_list(text: str, into: dict[str, str]) -> None:
    """DogStatsD `k:v,k2=v2,bare` into a dict (sanitized, last value wins)."""
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(":")
        if not sep:
            name, _, value = item.partition("=")
        name = sanitize(name)
        if name:
            into[name] = sanitize(value) or "true"


def _tag_suffix(tags: dict[str, str]) -> str:
    return "".join(f";{k}={tags[k]}" for k in sorted(tags))


def split_key(key: str) -> tuple[str, Tags]:
    """Canonical key -> (name, tags)."""
    name, *parts = key.split(";")
    return name, tuple((k, v) for k, _, v in (p.partition("=") for p in parts))


def make_key(name: str, tags: Iterable[tuple[str, str]] = ()) -> str | None:
    """(name, tags) from any source -> canonical key, sanitized; None if the name is empty."""
    clean = sanitize(name)
    if not clean:
        return None
    merged: dict[str, str] = {}
    for k, v in tags:
        k = sanitize(str(k))
        if k:
            merged[k] = sanitize("" if v is None else str(v)) or "true"
    return clean + _tag_suffix(merged)


class StatsdParser:
    """Parses StatsD text into visitor calls. Holds bounded memo tables, so keep one per input.

    keep_tags=False drops every tag (DogStatsD and in-name), so tagged series merge by name.
    fast_path=False forces the general path (used by the equivalence property test).
    """

    def __init__(
        self, keep_tags: bool = True, fast_path: bool = True, memo_size: int = _DEFAULT_MEMO_SIZE
    ) -> None:
        self.keep_tags = keep_tags
        self.fast_path = fast_path
        self._memo_size = max(16, memo_size)
        # raw name (may hold ";k=v" tags) -> canonical key; only names the fast path may trust
        self._keys: dict[str, str] = {}
        self._rates: dict[str, float] = {}  # "@0.1" -> 0.1, valid rates only
        self._tags: dict[str, str] = {}  # "#k:v,..." -> canonical ";k=v..." suffix ("" if dropped)
        # what follows "value|" on the fast path: "c|@0.1|#k:v" -> ("c", 0.1, ";k=v"), or False
        self._tails: dict[str, tuple[str, float, str] | bool] = {}
        self._numbers: dict[str, float] = {}  # "12.5" -> 12.5, valid numbers only

    # --- memoised helpers shared by both paths -------------------------------------------------

    def _remember(self, memo: dict, raw: str, value: object) -> None:
        if len(memo) >= self._memo_size:
            memo.clear()  # bounded memory under churn; refilled on demand
        memo[raw] = value

    def _key(self, raw_name: str) -> str | None:
        key = self._keys.get(raw_name)
        if key is not None:
            return key
        name, *in_name_tags = raw_name.split(";")
        key = sanitize(name)
        if not key:
            return None
        if in_name_tags and self.keep_tags:
            tags: dict[str, str] = {}
            for part in in_name_tags:
                tag, _, value = part.partition("=")
                tag = sanitize(tag)
                if tag:
                    tags[tag] = sanitize(value) or "true"
            key += _tag_suffix(tags)
        # The fast path splits at the first ":", so it may only trust names the general path would
        # read the same way: no "|" (tags are split off first there) and not an event.
        if "|" not in raw_name and not raw_name.startswith("_e{"):
            self._remember(self._keys, raw_name, key)
        return key

    def _rate(self, field: str) -> float | None:
        """A rate field such as "@0.25" -> 0.25, or None if invalid."""
        rate = self._rates.get(field)
        if rate is None:
            rate = parse_number(field[1:])
            if rate is None or rate <= 0.0:
                return None
            self._remember(self._rates, field, rate)
        return rate

    def _tag_text_suffix(self, field: str) -> str:
        """A tag field such as "#k:v,k2" (no "|") -> its canonical suffix ";k=v;k2=true"."""
        suffix = self._tags.get(field)
        if suffix is None:
            tags: dict[str, str] = {}
            if self.keep_tags:
                _parse_tag_list(field[1:], tags)
            suffix = _tag_suffix(tags)
            # The general path strips the line end first, so a field ending in blanks may read
            # differently at the end of a line: never let the fast path trust one.
            if not field[-1:].isspace():
                self._remember(self._tags, field, suffix)
        return suffix

    def _fast_tail(self, text: str) -> tuple[str, float, str] | bool:
        """`type[|@rate][|#tags]` -> (type, rate, tag suffix); False for anything else (the
        general path decides). Memoised: the same few tails repeat on every line."""
        typ, bar, extra = text.partition("|")
        rate: float | None = 1.0
        if extra[:1] == "@":
            field, bar, extra = extra.partition("|")
            rate = self._rate(field)
        tail: tuple[str, float, str] | bool = False
        if typ in _SIMPLE_TYPES and rate is not None:
            if not bar:
                tail = (typ, rate, "")
            elif extra[:1] == "#" and "|" not in extra and not extra[-1:].isspace():
                tail = (typ, rate, self._tag_text_suffix(extra))
        self._remember(self._tails, text, tail)
        return tail

    def _number(self, text: str) -> float | None:
        value = self._numbers.get(text)
        if value is None:
            value = parse_number(text)
            if value is not None:
                numbers = self._numbers
                if len(numbers) >= min(self._memo_size, _NUMBER_MEMO_SIZE):
                    numbers.clear()
                numbers[text] = value
        return value

    # --- entry points ----------------------------------------------------------------------------

    def feed(self, text: str, visitor: MetricVisitor) -> int:
        """Parse newline-separated lines; returns the number of non-blank lines."""
        return self.feed_lines(text.split("\n"), visitor)

    def feed_lines(self, lines: list[str], visitor: MetricVisitor) -> int:
        """Parse lines that hold no "\\n"; returns the number of non-blank lines."""
        general = self._general
        blank = 0
        if not self.fast_path:
            for line in lines:
                if not general(line, visitor):
                    blank += 1
            return len(lines) - blank
        key_get = self._keys.get
        tails_get = self._tails.get
        fast_tail = self._fast_tail
        number_get = self._numbers.get
        number = self._number
        simple = _SIMPLE_TYPES
        counter = visitor.counter
        timer = visitor.timer
        gauge = visitor.gauge
        set_member = visitor.set_member
        timing_kinds = _TIMING_BY_CODE
        timer_kind = Kind.TIMER
        for line in lines:
            name, sep, rest = line.partition(":")
            key = key_get(name)
            if key is not None and sep:
                value, _, typ = rest.partition("|")
                rate = 1.0
                if typ not in simple:  # "c|@0.1", "ms|#k:v"...: what follows the value, memoised
                    tail = tails_get(typ)
                    if tail is None:
                        tail = fast_tail(typ)
                    # (a key with in-name tags merges them with these on the general path)
                    if tail and not (tail[2] and ";" in key):
                        typ, rate, suffix = tail
                        if suffix:
                            key += suffix
                    else:
                        typ = ""
                if typ:
                    if typ == "c":
                        v = number_get(value) or number(value)
                        if v is not None:
                            counter(key, v, rate, None)
                            continue
                    elif typ == "ms":
                        v = number_get(value) or number(value)
                        if v is not None and v >= 0.0:
                            timer(key, v, rate, None, timer_kind)
                            continue
                    elif typ == "g":
                        v = number_get(value) or number(value)
                        if v is not None:
                            first = value[0]
                            gauge(key, v, rate, None, first == "-" or first == "+")
                            continue
                    elif typ == "s":
                        if ":" not in value:
                            set_member(key, value or "0", rate, None)
                            continue
                    elif typ == "h" or typ == "d":
                        v = number_get(value) or number(value)
                        if v is not None and v >= 0.0:
                            timer(key, v, rate, None, timing_kinds[typ])
                            continue
            if not general(line, visitor):
                blank += 1
        return len(lines) - blank

    # --- the general path: every form, every error -----------------------------------------------

    def _general(self, line: str, visitor: MetricVisitor) -> bool:
        """Parse one line; returns False if it was blank."""
        text = line.rstrip()  # CR of CRLF, trailing blanks
        if not text:
            return False
        if text.startswith("_e{"):
            visitor.event("event")
            return True
        if text.startswith("_sc|"):
            visitor.event("service_check")
            return True
        # As the reference: tags are split off first, so a ":" inside them never starts a group.
        head, has_tags, tail = text.partition("|#")
        raw_name, colon, body = head.partition(":")
        if not colon:
            visitor.bad_line(NO_VALUE, text)
            return True
        key = self._key(raw_name)
        if key is None:
            visitor.bad_line(BAD_NAME, text)
            return True
        groups, fields, typeless = _split_groups(body)
        for _ in range(typeless):
            visitor.bad_line(NO_TYPE, text)
        if has_tags:
            tail_fields = tail.split("|")
            fields.append("#" + tail_fields[0])
            fields.extend(tail_fields[1:])
        line_rate = 1.0
        timestamp: int | None = None
        tag_fields: list[str] = []
        for field in fields:
            first = field[:1]
            if first == "#":
                tag_fields.append(field)
            elif first == "@":
                rate = self._rate(field)
                if rate is None:
                    visitor.bad_line(BAD_RATE, text)
                    return True
                line_rate = rate
            elif first == "T":
                timestamp = _parse_timestamp(field[1:])
                if timestamp is None:
                    visitor.bad_line(BAD_TIMESTAMP, text)
                    return True
            elif not field.startswith(_EXTENSION_FIELDS):  # understood, but nothing to keep
                visitor.bad_line(BAD_FIELD, text)
                return True
        if tag_fields:
            key = self._merge_tags(key, tag_fields)
        for value, typ, rate_field in groups:
            self._group(key, value, typ, rate_field, line_rate, timestamp, text, visitor)
        return True

    def _merge_tags(self, key: str, tag_fields: list[str]) -> str:
        if len(tag_fields) == 1 and ";" not in key:
            return key + self._tag_text_suffix(tag_fields[0])
        name, tags = split_key(key)
        merged = dict(tags)
        for field in tag_fields:
            if self.keep_tags:
                _parse_tag_list(field[1:], merged)
        return name + _tag_suffix(merged)

    def _group(
        self,
        key: str,
        value: str,
        typ: str,
        rate_field: str | None,
        line_rate: float,
        timestamp: int | None,
        text: str,
        visitor: MetricVisitor,
    ) -> None:
        rate = line_rate
        if rate_field is not None:
            parsed = self._rate(rate_field)
            if parsed is None:
                visitor.bad_line(BAD_RATE, text)
                return
            rate = parsed
        if typ == "s":
            visitor.set_member(key, value or "0", rate, timestamp)
            return
        timing = _TIMING_BY_CODE.get(typ)
        if timing is None and typ != "c" and typ != "g":
            visitor.bad_line(BAD_TYPE, text)
            return
        number = self._number(value)
        if number is None:
            visitor.bad_line(BAD_VALUE, text)
        elif typ == "c":
            visitor.counter(key, number, rate, timestamp)
        elif typ == "g":
            visitor.gauge(key, number, rate, timestamp, value[0] in "+-")
        elif number < 0.0:
            visitor.bad_line(NEGATIVE_TIMING, text)
        else:
            visitor.timer(key, number, rate, timestamp, timing)  # type: ignore[arg-type]


def _split_groups(body: str) -> tuple[list[tuple[str, str, str | None]], list[str], int]:
    """`v|t[|@r]:v|t...|fields` -> ([(value, type, rate_field)], trailing fields, typeless count).

    A ":" in a value, type or rate token starts the next group (the reference splits the whole
    line on ":"); once a group is followed by anything else, the rest are line-level fields, whose
    own ":" (as in `c:container`) then means nothing.
    """
    tokens = body.split("|")
    groups: list[tuple[str, str, str | None]] = []
    *typeless_values, value = tokens[0].split(":")
    typeless = len(typeless_values)
    position, count = 1, len(tokens)
    while True:
        if position >= count:
            return groups, [], typeless + 1  # the last value has no type
        typ, colon, next_value = tokens[position].partition(":")
        position += 1
        rate_field: str | None = None
        if not colon and position < count and tokens[position][:1] == "@":
            rate_field, colon, next_value = tokens[position].partition(":")
            position += 1
        groups.append((value, typ, rate_field))
        if not colon:
            return groups, tokens[position:], typeless
        *more_typeless, value = next_value.split(":")
        typeless += len(more_typeless)


class _RecordCollector:
    """Visitor building records and errors (the parse() API)."""

    def __init__(self) -> None:
        self.records: list[StatsdMetric | StatsdEvent] = []
        self.errors: list[ProtocolError] = []
        self._split: dict[str, tuple[str, Tags]] = {}

    def _name_tags(self, key: str) -> tuple[str, Tags]:
        found = self._split.get(key)
        if found is None:
            found = self._split[key] = split_key(key)
        return found

    def counter(self, key: str, value: float, rate: float, timestamp: int | None) -> None:
        name, tags = self._name_tags(key)
        self.records.append(StatsdMetric(name, value, Kind.COUNTER, rate, tags, timestamp))

    def timer(self, key: str, value: float, rate: float, timestamp: int | None, kind: Kind) -> None:
        name, tags = self._name_tags(key)
        self.records.append(StatsdMetric(name, value, kind, rate, tags, timestamp))

    def gauge(
        self, key: str, value: float, rate: float, timestamp: int | None, delta: bool
    ) -> None:
        name, tags = self._name_tags(key)
        kind = Kind.GAUGE_DELTA if delta else Kind.GAUGE
        self.records.append(StatsdMetric(name, value, kind, rate, tags, timestamp))

    def set_member(self, key: str, member: str, rate: float, timestamp: int | None) -> None:
        name, tags = self._name_tags(key)
        self.records.append(StatsdMetric(name, member, Kind.SET, rate, tags, timestamp))

    def bad_line(self, reason: str, line: str) -> None:
        self.errors.append(DecodeError(reason, line))

    def event(self, kind: str) -> None:
        self.records.append(StatsdEvent(kind))


def decode(data: bytes) -> str:
    """Datagram bytes -> text. Lossless: bytes that are not UTF-8 survive as surrogates (names
    drop them when sanitized; `text.encode("utf-8", "surrogateescape")` gives the bytes back)."""
    return data.decode("utf-8", "surrogateescape")


_DEFAULT_PARSER = StatsdParser()
_DEFAULT_PARSER_NO_TAGS = StatsdParser(keep_tags=False)


def parse(datagram: bytes, keep_tags: bool = True) -> Decoded[StatsdMetric | StatsdEvent]:
    """One datagram (or any chunk of complete lines) -> the one result shape: StatsdMetric and
    StatsdEvent records in line order, and a DecodeError per bad line (`reason` the slug,
    `detail` the line as text; `.encode("utf-8", "surrogateescape")` gives its bytes back)."""
    collector = _RecordCollector()
    parser = _DEFAULT_PARSER if keep_tags else _DEFAULT_PARSER_NO_TAGS
    parser.feed(decode(datagram), collector)
    return Decoded(collector.records, collector.errors)
