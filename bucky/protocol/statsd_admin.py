"""The reference StatsD's management interface (stats.js, lib/mgmt_*.js): the text. Sans-I/O.

A command is a line, trimmed and split on single spaces as lib/mgmt_server.js splits it; answers
are the reference's, byte for byte where the reference's text is fixed (`health: up`, `END`,
`ERROR`, `deleted: NAME`, `metric NAME not found`, the help line). `counters`, `timers` and
`gauges` print the current interval's values as Node's util.inspect prints an object (quoted keys,
JavaScript numbers, one line when it fits 80 columns else one entry per line, arrays of more than
6 entries in Node's aligned columns, cut after 100 items with "... N more items"), checked
against node's own util.inspect by the tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal

HELP = ("Commands: stats, counters, timers, gauges, delcounters, deltimers, delgauges, health, "
        "config, quit\n\n")
COMMANDS = ("help", "config", "health", "stats", "counters", "timers", "gauges",
            "delcounters", "deltimers", "delgauges", "quit")
_IDENTIFIER = re.compile(r"^[a-zA-Z_][a-zA-Z_0-9]*$")
_BREAK_LENGTH = 80
_MAX_ARRAY = 100


def parse_command(line: str) -> tuple[str, list[str]]:
    """`data.trim().split(" ")`, then the first word is the command."""
    cmd, *params = line.strip().split(" ")
    return cmd, params


def js_number(x: float) -> str:
    """A number as JavaScript's String() writes it."""
    if isinstance(x, bool):
        return "true" if x else "false"
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    text = repr(x)  # the shortest digits that round-trip, as JavaScript picks them
    if "e" not in text:
        return text[:-2] if text.endswith(".0") else text
    mantissa, exp_text = text.split("e")
    exp = int(exp_text)
    if -7 < exp < 21:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"


def _js_string(text: str) -> str:
    """util.inspect's quoting: single quotes, else double, else backticks, else escaped."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    if "`" not in text and "${" not in text:
        return f"`{text}`"
    return "'" + text.replace("'", "\\'") + "'"


def _js_key(key: str) -> str:
    return key if _IDENTIFIER.match(key) else _js_string(key)


def _below_break(output: list[str], start: int) -> bool:
    total = len(output) + start
    if total + len(output) > _BREAK_LENGTH:
        return False
    for entry in output:
        total += len(entry)
        if total > _BREAK_LENGTH:
            return False
    return True


def _group(output: list[str], indent: int, numbers: bool, more: bool) -> list[str]:
    """Node's groupArrayElements: arrays of more than 6 entries printed in aligned columns."""
    n = len(output) - (1 if more else 0)
    lengths = [len(o) for o in output[:n]]
    total = sum(lengths) + 2 * n
    longest = max(lengths)
    actual = longest + 2
    if not (actual * 3 + indent < _BREAK_LENGTH and (total / actual > 5 or longest <= 6)):
        return output
    bias = math.sqrt(actual - total / len(output))
    biased = max(actual - 3 - bias, 1)
    columns = min(_js_round(math.sqrt(2.5 * biased * n) / biased),
                  (_BREAK_LENGTH - indent) // actual, 3 * 4, 15)
    if columns <= 1:
        return output
    widths = [max(lengths[j] for j in range(i, n, columns)) + 2 for i in range(columns)]
    rows = []
    for i in range(0, n, columns):
        last = min(i + columns, n)
        row = ""
        for j in range(i, last - 1):
            cell = output[j] + ", "
            row += cell.rjust(widths[j - i]) if numbers else cell.ljust(widths[j - i])
        j = last - 1
        row += output[j].rjust(widths[j - i] - 2) if numbers else output[j]
        rows.append(row)
    if more:
        rows.append(output[-1])
    return rows


def _js_round(x: float) -> int:
    return math.floor(x + 0.5)


def _reduce(output: list[str], braces: tuple[str, str], indent: int, single: bool) -> str:
    if single:
        start = len(output) + indent + len(braces[0]) + 10
        if _below_break(output, start):
            joined = ", ".join(output)
            if "\n" not in joined:
                return f"{braces[0]} {joined} {braces[1]}"
    pad = "\n" + " " * indent
    return f"{braces[0]}{pad}  " + f",{pad}  ".join(output) + f"{pad}{braces[1]}"


def _inspect(value: object, indent: int) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        output = [f"{_js_key(str(k))}: {_inspect(v, indent + 2)}" for k, v in value.items()]
        return _reduce(output, ("{", "}"), indent, True)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        output = [_inspect(v, indent + 2) for v in value[:_MAX_ARRAY]]
        more = len(value) - _MAX_ARRAY
        if more > 0:
            output.append(f"... {more} more item{'s' if more > 1 else ''}")
        entries = len(output)
        if entries > 6:
            numbers = all(isinstance(v, (int, float)) for v in value[:_MAX_ARRAY])
            output = _group(output, indent, numbers, more > 0)
        return _reduce(output, ("[", "]"), indent, entries == len(output))
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, (int, float)):
        return js_number(value)
    return str(value)


def inspect(value: object) -> str:
    """Node's util.inspect for the plain objects the management interface prints."""
    return _inspect(value, 0)


def dump_answer(values: Mapping[str, object]) -> str:
    """The answer to `counters`, `timers` or `gauges`."""
    return inspect(values) + "\nEND\n\n"


def existing_stats(names: Sequence[str], bucket: str) -> list[str]:
    """lib/mgmt_console.js: the exact name, and with a trailing ".*" every name under it."""
    matches = [bucket] if bucket in names else []
    if bucket.endswith(".*"):
        folder = bucket[:-1]
        matches.extend(name for name in names if name.startswith(folder))
    return matches


def delete_answer(deleted: Mapping[str, list[str]], buckets: Sequence[str]) -> str:
    """The answer to del*: `deleted` maps each requested bucket to the names it removed."""
    out = []
    for bucket in buckets:
        names = deleted.get(bucket, [])
        if not names:
            out.append(f"metric {bucket} not found\n")
        out.extend(f"deleted: {name}\n" for name in names)
    return "".join(out) + "END\n\n"


def health_answer(status: str) -> str:
    return f"health: {status}\n"


def health_command(status: str, params: Sequence[str]) -> str:
    """The status after `health [up|down]`."""
    if params:
        action = params[0].lower()
        if action in ("up", "down"):
            return action
    return status


def stats_answer(uptime: int, stats: Mapping[str, Mapping[str, float]], now: int) -> str:
    """`stats`: uptime, then group.metric lines (last_* as seconds ago), then END."""
    out = [f"uptime: {uptime}\n"]
    for group, metrics in stats.items():
        for metric, value in metrics.items():
            shown = now - value if metric.startswith("last_") else value
            out.append(f"{group}.{metric}: {js_number(shown)}\n")
    return "".join(out) + "END\n\n"


def config_answer(items: Mapping[str, object]) -> str:
    """`config`: helpers.writeConfig: a blank line, then `name: value` per option."""
    out = ["\n"]
    for name, value in items.items():
        out.append(f"{name}: {value}\n")
    return "".join(out)
