"""Read collectd.conf syntax into trees of `ConfNode`, the way collectd's own parser does.

So an existing collectd setup can be reused as it is, the rules are collectd's (liboconfig's
scanner and grammar, and configfile.c's `Include`), checked against collectd 5.12 in the tests:

- A statement is `Key value...` on one line, or a block `<Key value...>` ... `</Key>`. A key is a
  bare word; an option needs at least one value. A backslash right before the end of a line joins
  the next line; `#` outside quotes starts a comment.
- Value types: a quoted string (a backslash keeps the next character as it is, there are no C
  escapes; a backslash-newline inside quotes continues the string on the next line, whose leading
  blanks are dropped); a number (decimal, signed; `0x` hex; a float needs a '.' and its exponent a
  sign), always a float; the lower-case bare words true/yes/on and false/no/off as bools; any
  other bare word `[A-Za-z0-9_]+` or IPv4/IPv6 address (with an optional :port) as a string. The
  longest token wins, a tie goes to bool, then number (`0x1F` is 31.0, `1e5` the string "1e5").
- Statements with neither values nor children (an empty `<Key>` block) are dropped.
- Deviations, all stricter or kinder, never a different tree: a character collectd's scanner
  would silently skip (say a `-` in a bare word) is an error here; the last line needs no newline;
  a relative `Include` path is taken from the including file's directory, not the working one.
- Every problem is a ConfigError "file:line: message".
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bucky.errors import ConfigError

ConfValue = str | float | bool

MAX_INCLUDE_DEPTH = 8  # collectd's CF_MAX_DEPTH


@dataclass(frozen=True)
class ConfNode:
    """One statement: `key`, its typed `values` and, for a block, its `children`."""

    key: str
    values: tuple[ConfValue, ...] = ()
    children: tuple[ConfNode, ...] = ()
    file: str = field(default="<string>", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_plain(self) -> dict:
        """A JSON-friendly copy (for comparing trees): values keep their Python types."""
        return {
            "key": self.key,
            "values": list(self.values),
            "children": [c.to_plain() for c in self.children],
        }


# --- tokens ---------------------------------------------------------------------------------------

_IP_BYTE = r"(?:2(?:5[0-5]|[0-4][0-9])|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = (r"(?:6(?:5(?:5(?:3[0-5]|[0-2][0-9])|[0-4][0-9][0-9])|[0-4][0-9][0-9][0-9])"
         r"|[1-5][0-9][0-9][0-9][0-9]|[1-9][0-9]?[0-9]?[0-9]?)")
_IPV4 = rf"{_IP_BYTE}\.{_IP_BYTE}\.{_IP_BYTE}\.{_IP_BYTE}(?::{_PORT})?"
_H16 = r"[0-9A-Fa-f]{1,4}"
_V6_PART = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6_BASE = "|".join([
    rf"(?:{_H16}:){{6}}{_V6_PART}",
    rf"::(?:{_H16}:){{5}}{_V6_PART}",
    rf"(?:{_H16})?::(?:{_H16}:){{4}}{_V6_PART}",
    rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_V6_PART}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_V6_PART}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_V6_PART}",
    rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_V6_PART}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
])
_IPV6 = rf"(?:{_IPV6_BASE})|\[(?:{_IPV6_BASE})\](?::{_PORT})?"
_HEX = r"0[xX][0-9a-fA-F]+"
_NUMBER = rf"[+-]?[0-9]*\.[0-9]+(?:[eE][+-][0-9]+)?|{_HEX}|0[0-7]+|[+-]?[0-9]+"

# The scanner's rules for bare tokens, in its order (a tie in length goes to the earlier rule).
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("true", re.compile(r"true|yes|on")),
    ("false", re.compile(r"false|no|off")),
    ("word", re.compile(_IPV4)),
    ("word", re.compile(_IPV6)),
    ("number", re.compile(_NUMBER)),
    ("word", re.compile(r"[0-9A-Za-z_]+")),
)
_HEX_RE = re.compile(_HEX)
_BARE_RUN = re.compile(r'[^ \t\b\r\n"<>/#\\]+')  # no bare token reaches past these
_BLANKS = " \t\b"


@dataclass(frozen=True)
class _Token:
    kind: str  # "eol" "eof" "<" ">" "/" "word" "quoted" "number" "true" "false"
    text: str
    line: int

    @property
    def is_value(self) -> bool:
        return self.kind in ("word", "quoted", "number", "true", "false")

    def value(self) -> ConfValue:
        if self.kind == "number":
            return float(int(self.text, 16)) if _HEX_RE.fullmatch(self.text) else float(self.text)
        if self.kind in ("true", "false"):
            return self.kind == "true"
        return self.text

    def shown(self) -> str:
        return {"eol": "end of line", "eof": "end of file"}.get(self.kind, repr(self.text))


def _longest_bare_token(text: str, pos: int) -> tuple[str, int]:
    """(rule kind, length) of the longest bare token at pos; length 0 when none matches."""
    run = _BARE_RUN.match(text, pos)
    end = run.end() if run else pos
    best_kind, best_len = "", 0
    for kind, rule in _RULES:
        for stop in range(end, pos + best_len, -1):  # only a strictly longer match can win
            if rule.fullmatch(text, pos, stop):
                best_kind, best_len = kind, stop - pos
                break
    return best_kind, best_len


def _tokens(text: str, filename: str) -> Iterator[_Token]:
    pos, line, size = 0, 1, len(text)
    while pos < size:
        char = text[pos]
        if char in _BLANKS or (char == "\r" and text[pos + 1:pos + 2] != "\n"):
            pos += 1
        elif char == "#":
            while pos < size and text[pos] != "\n":
                pos += 1
        elif char == "\n" or text.startswith("\r\n", pos):
            yield _Token("eol", "\n", line)
            pos += 1 if char == "\n" else 2
            line += 1
        elif char == "\\":
            if text.startswith("\n", pos + 1) or text.startswith("\r\n", pos + 1):
                pos += 2 if text[pos + 1] == "\n" else 3
                line += 1
            else:
                raise ConfigError(f"{filename}:{line}: unexpected '\\' outside quotes")
        elif char in "<>/":
            yield _Token(char, char, line)
            pos += 1
        elif char == '"':
            token, pos, line = _quoted(text, pos, line, filename)
            yield token
        else:
            kind, length = _longest_bare_token(text, pos)
            if not length:
                raise ConfigError(f"{filename}:{line}: unexpected character {char!r} "
                                  "(quote values that hold it)")
            yield _Token(kind, text[pos:pos + length], line)
            pos += length
    yield _Token("eof", "", line)


def _quoted(text: str, pos: int, line: int, filename: str) -> tuple[_Token, int, int]:
    start_line, out, pos, size = line, [], pos + 1, len(text)
    while pos < size:
        char = text[pos]
        if char == '"':
            return _Token("quoted", "".join(out), start_line), pos + 1, line
        if char == "\\":
            nxt = text[pos + 1:pos + 2]
            if nxt == "\n" or text.startswith("\r\n", pos + 1):
                pos += 2 if nxt == "\n" else 3
                line += 1
                while pos < size and text[pos] in _BLANKS:
                    pos += 1
                continue
            if not nxt:
                break
            out.append(nxt)
            pos += 2
            continue
        if char == "\n":
            line += 1
        out.append(char)
        pos += 1
    raise ConfigError(f"{filename}:{start_line}: quoted string not closed")


# --- grammar --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self._filename = filename
        self._tokens = list(_tokens(text, filename))
        self._at = 0

    def parse(self) -> ConfNode:
        children = self._statements(closing=None, opened_at=0)
        return ConfNode("", (), tuple(children), self._filename, 1)

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._at + ahead, len(self._tokens) - 1)]

    def _take(self) -> _Token:
        token = self._peek()
        self._at = min(self._at + 1, len(self._tokens) - 1)
        return token

    def _fail(self, token: _Token, message: str) -> ConfigError:
        return ConfigError(f"{self._filename}:{token.line}: {message}")

    def _key(self, what: str) -> _Token:
        token = self._take()
        if token.kind != "word":
            raise self._fail(token, f"expected {what}, got {token.shown()}")
        return token

    def _end_of_statement(self) -> None:
        token = self._take()
        if token.kind not in ("eol", "eof"):
            raise self._fail(token, f"expected the end of the line, got {token.shown()}")

    def _statements(self, closing: str | None, opened_at: int) -> list[ConfNode]:
        nodes: list[ConfNode] = []
        while True:
            token = self._peek()
            if token.kind == "eof":
                if closing is not None:
                    raise ConfigError(f"{self._filename}:{opened_at}: block <{closing}> is not "
                                      "closed")
                return nodes
            if token.kind == "eol":
                self._take()
            elif token.kind == "<" and self._peek(1).kind == "/":
                self._take(), self._take()
                end = self._key("a block name after '</'")
                if self._take().kind != ">":
                    raise self._fail(end, f"expected '>' after '</{end.text}'")
                self._end_of_statement()
                if closing is None:
                    raise self._fail(end, f"</{end.text}> closes no open block")
                if end.text != closing:
                    raise self._fail(end, f"block <{closing}> opened on line {opened_at} "
                                          f"is closed by </{end.text}>")
                return nodes
            elif token.kind == "<":
                self._take()
                key = self._key("a block name after '<'")
                values = self._values()
                if self._take().kind != ">":
                    raise self._fail(key, f"expected '>' to end <{key.text} ...")
                self._end_of_statement()
                children = self._statements(key.text, key.line)
                if values or children:
                    nodes.append(ConfNode(key.text, values, tuple(children), self._filename,
                                          key.line))
            else:
                key = self._key("an option name")
                values = self._values()
                if not values:
                    raise self._fail(key, f"option {key.text!r} has no value")
                self._end_of_statement()
                nodes.append(ConfNode(key.text, values, (), self._filename, key.line))

    def _values(self) -> tuple[ConfValue, ...]:
        values = []
        while self._peek().is_value:
            values.append(self._take().value())
        return tuple(values)


def parse_text(text: str, filename: str = "<string>") -> ConfNode:
    """Parse one file's text; the root node has key "" and the file's statements as children."""
    return _Parser(text, filename).parse()


# --- files and Include ----------------------------------------------------------------------------


def read_config_file(path: str, warnings: list[str] | None = None) -> ConfNode:
    """Parse a collectd.conf-style file, resolving top-level `Include` as collectd does.

    `Include "path"` (shell wildcards, ~ and $VARS expanded; a directory brings in its files,
    sorted, recursively, skipping dot-files; an `<Include "path"> Filter "*.conf" </Include>`
    block keeps the files whose name matches) is replaced by the statements it brings in.
    A path that matches nothing is a warning, as in collectd (appended to `warnings`)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: cannot read: not a file")
    sink = warnings if warnings is not None else []
    nodes = _read_generic(path, None, 0, sink, os.getcwd())
    return ConfNode("", (), tuple(nodes), path, 1)


def _read_generic(path: str, pattern: str | None, depth: int, warnings: list[str],
                  base_dir: str) -> list[ConfNode]:
    if depth >= MAX_INCLUDE_DEPTH:
        raise ConfigError(f"{path}: not included: more than {MAX_INCLUDE_DEPTH} nested Includes")
    expanded = os.path.expandvars(os.path.expanduser(path))
    if not os.path.isabs(expanded):
        expanded = os.path.join(base_dir, expanded)
    matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
    nodes: list[ConfNode] = []
    for match in matches:
        if os.path.isdir(match):
            nodes.extend(_read_dir(match, pattern, depth, warnings))
        elif os.path.isfile(match):
            nodes.extend(_read_file(match, pattern, depth, warnings))
        else:
            warnings.append(f"{match}: included file does not exist, ignored")
    if not matches:
        warnings.append(f"{path}: Include matches no file, ignored")
    return nodes


def _read_dir(directory: str, pattern: str | None, depth: int,
              warnings: list[str]) -> list[ConfNode]:
    nodes: list[ConfNode] = []
    for name in sorted(os.listdir(directory)):
        if not name.startswith("."):
            nodes.extend(_read_generic(os.path.join(directory, name), pattern, depth, warnings,
                                       directory))
    return nodes


def _read_file(path: str, pattern: str | None, depth: int,
               warnings: list[str]) -> list[ConfNode]:
    if pattern is not None and not fnmatch.fnmatchcase(os.path.basename(path), pattern):
        return []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    nodes: list[ConfNode] = []
    for node in parse_text(text, path).children:
        if node.key.lower() == "include":
            nodes.extend(_include(node, depth, warnings))
        else:
            nodes.append(node)
    return nodes


def _include(node: ConfNode, depth: int, warnings: list[str]) -> list[ConfNode]:
    if len(node.values) != 1 or not isinstance(node.values[0], str):
        raise ConfigError(f"{node.where}: Include needs exactly one string argument")
    pattern: str | None = None
    for child in node.children:
        if child.key.lower() != "filter":
            raise ConfigError(f"{child.where}: option {child.key!r} not allowed in <Include>")
        if len(child.values) != 1 or not isinstance(child.values[0], str):
            raise ConfigError(f"{child.where}: Filter needs exactly one string argument")
        pattern = child.values[0]
    return _read_generic(node.values[0], pattern, depth + 1, warnings,
                         os.path.dirname(os.path.abspath(node.file)))
