"""types.db parsing and loading, and the built-in table of standard types."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers import missing

from bucky.errors import ConfigError
from bucky.protocol import typesdb
from bucky.protocol.collectd_records import ABSOLUTE, COUNTER, DERIVE, GAUGE
from bucky.protocol.typesdb import (
    DataSet,
    DataSource,
    builtin_types_db,
    load_types_db,
    parse_types_db,
    render_builtin_table,
)

SYSTEM_TYPES_DB = Path("/usr/share/collectd/types.db")
BUILTIN_MODULE = Path(typesdb.__file__).with_name("collectd_types.py")

SAMPLE = """\
# A comment line
absolute                value:ABSOLUTE:0:U

if_octets               rx:DERIVE:0:U, tx:DERIVE:0:U
load\tshortterm:GAUGE:0:5000,\tmidterm:GAUGE:0:5000   longterm:GAUGE:0:5000
   voltage   value:gauge:U:U
mixed a:Counter:-1.5:1e3,b:derive:U:0   # a trailing comment
"""


def test_parse_lenient_syntax() -> None:
    parsed = parse_types_db(SAMPLE, "sample.db")
    assert list(parsed) == ["absolute", "if_octets", "load", "voltage", "mixed"]
    assert parsed["absolute"] == DataSet("absolute", (DataSource("value", ABSOLUTE, 0.0, None),))
    assert parsed["if_octets"].sources == (
        DataSource("rx", DERIVE, 0.0, None),
        DataSource("tx", DERIVE, 0.0, None),
    )
    assert [ds.name for ds in parsed["load"].sources] == ["shortterm", "midterm", "longterm"]
    assert parsed["load"].sources[2] == DataSource("longterm", GAUGE, 0.0, 5000.0)
    assert parsed["voltage"].sources == (DataSource("value", GAUGE, None, None),)
    assert parsed["mixed"].sources == (
        DataSource("a", COUNTER, -1.5, 1000.0),
        DataSource("b", DERIVE, None, 0.0),
    )


def test_later_definitions_override() -> None:
    text = "x value:GAUGE:0:1\nx value:DERIVE:0:U\n"
    assert parse_types_db(text)["x"].sources == (DataSource("value", DERIVE, 0.0, None),)


def test_empty_text() -> None:
    assert parse_types_db("") == {}
    assert parse_types_db("\n\n# only comments\n   \n") == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("lonely", "has no data sources"),
        ("x value:GAUGE:0", "is not name:TYPE:min:max"),
        ("x value:GAUGE:0:U:extra", "is not name:TYPE:min:max"),
        ("x :GAUGE:0:U", "is not name:TYPE:min:max"),
        ("x value:FLOAT:0:U", "unknown type 'FLOAT'"),
        ("x value:GAUGE:zero:U", "min 'zero' is neither a number nor U"),
        ("x value:GAUGE:0:many", "max 'many' is neither a number nor U"),
        ("x value:GAUGE:0:U value:GAUGE:0:U", "repeats a data source name"),
        ("value:GAUGE:0:U", "is not a type name"),
    ],
)
def test_malformed_lines_are_config_errors_with_source_and_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_types_db(f"# header\nok value:GAUGE:0:U\n{line}\n", "my.db")
    assert str(caught.value).startswith("my.db:3: ")
    assert message in str(caught.value)


def test_load_later_files_override_earlier(tmp_path: Path) -> None:
    first = tmp_path / "a.db"
    second = tmp_path / "b.db"
    first.write_text("x value:GAUGE:0:1\ny value:GAUGE:0:1\n")
    second.write_text("x value:DERIVE:0:U\n")
    loaded = load_types_db([str(first), str(second)])
    assert loaded["x"].sources[0].ds_type == DERIVE
    assert loaded["y"].sources[0].ds_type == GAUGE


def test_load_a_missing_listed_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(ConfigError, match="nope.db"):
        load_types_db([str(missing)])


def test_load_a_malformed_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("x value:GAUGE\n")
    with pytest.raises(ConfigError, match=r"bad\.db:1: "):
        load_types_db([str(bad)])


def test_load_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.db"
    bad.write_bytes(b"caf\xe9 value:GAUGE:0:U\n")
    with pytest.raises(ConfigError, match="latin1.db"):
        load_types_db([str(bad)])


def test_load_rejects_a_single_string() -> None:
    with pytest.raises(TypeError):
        load_types_db("/usr/share/collectd/types.db")  # type: ignore[arg-type]


def test_load_without_paths_falls_back_in_order(tmp_path: Path, monkeypatch) -> None:
    first = tmp_path / "first.db"
    second = tmp_path / "second.db"
    second.write_text("only_second value:GAUGE:0:U\n")
    monkeypatch.setattr(typesdb, "DEFAULT_PATHS", (str(first), str(second)))
    assert list(load_types_db([])) == ["only_second"]
    first.write_text("only_first value:GAUGE:0:U\n")
    assert list(load_types_db([])) == ["only_first"]


def test_load_without_paths_or_defaults_uses_the_builtin_table(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(typesdb, "DEFAULT_PATHS", (str(tmp_path / "a"), str(tmp_path / "b")))
    assert load_types_db([]) == builtin_types_db()


def test_builtin_table_covers_the_standard_types() -> None:
    table = builtin_types_db()
    assert len(table) > 300
    assert table["if_octets"].sources == (
        DataSource("rx", DERIVE, 0.0, None),
        DataSource("tx", DERIVE, 0.0, None),
    )
    assert [ds.ds_type for ds in table["mysql_qcache"].sources] == [COUNTER] * 4 + [GAUGE]
    assert table["absolute"].sources == (DataSource("value", ABSOLUTE, 0.0, None),)
    for name in ("cpu", "memory", "load", "df_complex", "if_packets", "counter", "gauge"):
        assert name in table
    for dataset in table.values():
        assert dataset.sources and all(isinstance(ds, DataSource) for ds in dataset.sources)


def test_builtin_table_renders_back_to_its_own_source() -> None:
    table = builtin_types_db()
    rendered = render_builtin_table(table, "/usr/share/collectd/types.db")
    assert rendered == BUILTIN_MODULE.read_text(encoding="utf-8")


def test_builtin_table_equals_the_installed_collectd_types_db() -> None:
    if not SYSTEM_TYPES_DB.exists():
        missing(f"no {SYSTEM_TYPES_DB} to compare (Debian package collectd-core)")
    system = parse_types_db(SYSTEM_TYPES_DB.read_text(encoding="utf-8"), str(SYSTEM_TYPES_DB))
    assert builtin_types_db() == system
    assert render_builtin_table(system, str(SYSTEM_TYPES_DB)) == BUILTIN_MODULE.read_text(
        encoding="utf-8"
    )
