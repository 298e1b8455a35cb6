"""collectd's types.db: the data sets (DS names, types, min/max) that name the values of a type.

What this module is for: `parse_types_db()` reads the text of a types.db file,
`load_types_db()` reads the configured files (or a default) at start-up, and
`builtin_types_db()` gives the table of collectd 5.12's standard types kept in
bucky.protocol.collectd_types for hosts without a types.db.

Rules:
- parse_types_db() is pure (text in, records out). Reading files in load_types_db() is the one
  exception to the sans-I/O rule of bucky.protocol: types.db is read once, at start.
- Syntax, as collectd's types_list.c and a little more lenient: `name ds[, ds ...]` where each
  ds is `ds_name:TYPE:min:max`; fields are separated by spaces, tabs and/or commas; TYPE is
  GAUGE, COUNTER, DERIVE or ABSOLUTE in any case; min/max are numbers or `U` (unbounded, None);
  `#` starts a comment (a whole line, or the rest of a line at a field boundary); blank lines
  are skipped. A later definition of the same type replaces the earlier one.
- A malformed line is a configuration error found at start: ConfigError("<source>:<line>: ...").
- Run `python -m bucky.protocol.typesdb [types.db]` to regenerate collectd_types.py.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from bucky.errors import ConfigError
from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, DS_TYPE_NAMES, GAUGE

DEFAULT_PATHS = ("/usr/share/collectd/types.db", "/usr/local/share/collectd/types.db")


class DataSource(NamedTuple):
    name: str
    ds_type: int  # COUNTER, GAUGE, DERIVE or ABSOLUTE from bucky.protocol.collectd_records
    min: float | None  # None = U, unbounded
    max: float | None


class DataSet(NamedTuple):
    name: str  # the type, e.g. "if_octets"
    sources: tuple[DataSource, ...]  # in wire order


_DS_TYPES = {"GAUGE": GAUGE, "COUNTER": COUNTER, "DERIVE": DERIVE, "ABSOLUTE": ABSOLUTE}
_FIELD_SEPARATORS = re.compile(r"[\s,]+")


def _limit(text: str, what: str) -> float | None:
    if text.upper() == "U":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is neither a number nor U") from None
    return None if math.isnan(value) else value  # collectd stores U as NaN


def _data_source(field: str) -> DataSource:
    pieces = field.split(":")
    if len(pieces) != 4 or not pieces[0]:
        raise ValueError(f"data source {field!r} is not name:TYPE:min:max")
    name, type_name, low, high = pieces
    ds_type = _DS_TYPES.get(type_name.upper())
    if ds_type is None:
        raise ValueError(f"data source {name!r} has unknown type {type_name!r}")
    return DataSource(name, ds_type, _limit(low, "min"), _limit(high, "max"))


def parse_types_db(text: str, source: str = "<types.db>") -> dict[str, DataSet]:
    """Parse the text of a types.db file into {type name: DataSet}, in file order."""
    datasets: dict[str, DataSet] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = []
        for field in _FIELD_SEPARATORS.split(line.strip()):
            if field.startswith("#"):
                break
            if field:
                fields.append(field)
        if not fields:
            continue
        name, specs = fields[0], fields[1:]
        if ":" in name:
            raise ConfigError(f"{source}:{number}: {name!r} is not a type name")
        if not specs:
            raise ConfigError(f"{source}:{number}: type {name!r} has no data sources")
        try:
            sources = tuple(_data_source(spec) for spec in specs)
        except ValueError as error:
            raise ConfigError(f"{source}:{number}: {error}") from None
        names = [ds.name for ds in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}:{number}: type {name!r} repeats a data source name")
        datasets[name] = DataSet(name, sources)
    return datasets


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read types.db {path!r}: {error}") from None


def load_types_db(paths: Sequence[str]) -> dict[str, DataSet]:
    """The data sets of the listed files, later files overriding earlier ones.

    With no paths: the first readable of DEFAULT_PATHS, else the built-in table. A listed file
    that cannot be read, or any malformed file, raises ConfigError naming it.
    """
    if isinstance(paths, str):
        raise TypeError("paths must be a sequence of paths, not one string")
    if not paths:
        for path in DEFAULT_PATHS:
            try:
                with open(path, encoding="utf-8") as file:
                    text = file.read()
            except (OSError, UnicodeDecodeError):
                continue  # a default location that is missing or unreadable: try the next
            return parse_types_db(text, path)
        return builtin_types_db()
    datasets: dict[str, DataSet] = {}
    for path in paths:
        datasets.update(parse_types_db(_read(path), path))
    return datasets


def builtin_types_db() -> dict[str, DataSet]:
    """collectd 5.12's standard types, from the table in bucky.protocol.collectd_types."""
    from bucky.protocol.collectd_types import TYPES  # lazily: only the last fallback needs it

    return {
        name: DataSet(name, tuple(DataSource(*source) for source in sources))
        for name, sources in TYPES.items()
    }


# ---------------------------------------------------------------------------------------------
# Generator of bucky/protocol/collectd_types.py

_TABLE_HEADER = '''\
"""The standard collectd types (collectd 5.12's types.db) as a built-in table for Bucky.

What this module is for: the fallback data sets of bucky.protocol.typesdb.builtin_types_db(),
used when no types.db file is configured or found. Data only, no code.

Rules: generated -- do not edit by hand. Regenerate with
    python -m bucky.protocol.typesdb /usr/share/collectd/types.db \\
        > bucky/protocol/collectd_types.py
(source: {source}).
Each entry is type -> ((ds name, ds type, min, max), ...); a min/max of None means U.
"""

from __future__ import annotations

from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, GAUGE

TYPES: dict[str, tuple[tuple[str, int, float | None, float | None], ...]] = {{
'''


def _literal(limit: float | None) -> str:
    return repr(limit).replace("e+", "e")  # the spelling ruff format keeps


def render_builtin_table(datasets: Mapping[str, DataSet], source: str) -> str:
    """The Python source of collectd_types.py for `datasets` (stable under `ruff format`)."""
    lines = [_TABLE_HEADER.format(source=source)]
    for name, dataset in datasets.items():
        rendered = [
            f"({json.dumps(ds.name)}, {DS_TYPE_NAMES[ds.ds_type].upper()}, "
            f"{_literal(ds.min)}, {_literal(ds.max)})"
            for ds in dataset.sources
        ]
        key = json.dumps(name)  # a double-quoted Python literal, escapes included
        one_line = f"    {key}: ({rendered[0]},),"
        if len(rendered) == 1 and len(one_line) <= 100:
            lines.append(one_line + "\n")
        else:
            lines.append(f"    {key}: (\n")
            lines.extend(f"        {item},\n" for item in rendered)
            lines.append("    ),\n")
    lines.append("}\n")
    return "".join(lines)


if __name__ == "__main__":
    _path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATHS[0]
    sys.stdout.write(render_builtin_table(parse_types_db(_read(_path), _path), _path))
