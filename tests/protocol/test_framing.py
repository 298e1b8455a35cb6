"""The stream framing (bucky.protocol.framing): lines over TCP, with a bound per line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.protocol.framing import LineFramer


def test_framer_joins_partial_lines() -> None:
    framer = LineFramer(100)
    assert framer.feed(b"a:1|c\nb:") == [b"a:1|c"]
    assert framer.feed(b"2|c") == []
    assert framer.feed(b"\nc:3|c\n\n") == [b"b:2|c", b"c:3|c"]
    assert framer.overlong_lines == 0


def test_framer_discards_overlong_lines_up_to_the_newline() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"ok:1|c\n" + b"x" * 8) == [b"ok:1|c"]
    assert framer.feed(b"yyyy") == []  # now 12 bytes without a newline: discarding
    assert framer.overlong_lines == 1
    assert framer.feed(b"zzzzzzzzzzzzzzz") == []
    assert framer.feed(b"zz\nb:2|c\n" + b"w" * 11 + b"\nc:3|c\n") == [b"b:2|c", b"c:3|c"]
    assert framer.overlong_lines == 2


def test_framer_close_loses_only_the_partial_line() -> None:
    framer = LineFramer(100)
    assert framer.feed(b"a:1|c\nb:2") == [b"a:1|c"]
    framer.close()
    assert framer.truncated_lines == 1
    assert framer.feed(b"|c\n") == [b"|c"]  # a new connection's data starts afresh


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a:1|c", b"bb:22|ms", b"", b"x" * 30, b"\r"]), max_size=20),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
)
def test_framer_any_chunking_gives_the_lines(lines: list[bytes], cuts: list[int]) -> None:
    limit = 20
    stream = b"".join(line + b"\n" for line in lines)
    framer = LineFramer(limit)
    got: list[bytes] = []
    position = 0
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        got.extend(framer.feed(stream[position : position + size]))
        position += size
        if position >= len(stream):
            break
    got.extend(framer.feed(stream[position:]))
    assert got == [line for line in lines if line and len(line) <= limit]
    assert framer.overlong_lines == sum(1 for line in lines if len(line) > limit)
