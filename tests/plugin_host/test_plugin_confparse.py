"""collectd.conf syntax -> ConfNode trees: values, blocks, quoting, errors and Include."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky.errors import ConfigError
from bucky.plugin_host.confparse import ConfNode, parse_text, read_config_file


def values_of(text: str) -> tuple:
    (node,) = parse_text(text).children
    return node.values


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("A 1", (1.0,)),
        ("A 0x1F 0XfF", (31.0, 255.0)),
        ("A 010 08 00", (10.0, 8.0, 0.0)),  # strtod: octal-looking numbers are decimal
        ("A -.5 +3 -7", (-0.5, 3.0, -7.0)),
        ("A 1.5e+3 2.5E-1", (1500.0, 0.25)),
        ("A 1.5e3", (1.5, "e3")),  # an exponent needs its sign
        ("A 1e5 123abc 1_000", ("1e5", "123abc", "1_000")),  # longest token wins
        ("A true false yes no on off", (True, False, True, False, True, False)),
        ("A True YES Off truex _on", ("True", "YES", "Off", "truex", "_on")),  # lower case only
        ('A "q\\"x" "back\\\\slash" "a#b" "tab\\tx"', ('q"x', "back\\slash", "a#b", "tabtx")),
        ('A "" "x y"', ("", "x y")),
        ("A 127.0.0.1 127.0.0.1:2003 10.0.0.256", ("127.0.0.1", "127.0.0.1:2003", "10.0.0.25",
                                                   6.0)),
        ("A ::1 [::1]:80 fe80::1 1.2.3", ("::1", "[::1]:80", "fe80::1", 1.2, 0.3)),
        ('A"glued"1', ("glued", 1.0)),
        ("A 1 # a comment \"with quotes\"", (1.0,)),
    ],
)
def test_values_are_typed_like_collectd(line: str, expected: tuple) -> None:
    got = values_of(line)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_blocks_nest_and_empty_statements_are_dropped() -> None:
    text = """
# leading comment
<Plugin python>
  ModulePath "/opt/plugins"
  <Module spam>
    spam "wonderful" "lovely"
    <Inner 1>
      Deep true
    </Inner>
  </Module>
  <Empty>
  </Empty>
  <EmptyWithValue x>
  </EmptyWithValue>
</Plugin>
"""
    root = parse_text(text, "py.conf")
    assert root.to_plain() == {"key": "", "values": [], "children": [{
        "key": "Plugin", "values": ["python"], "children": [
            {"key": "ModulePath", "values": ["/opt/plugins"], "children": []},
            {"key": "Module", "values": ["spam"], "children": [
                {"key": "spam", "values": ["wonderful", "lovely"], "children": []},
                {"key": "Inner", "values": [1.0], "children": [
                    {"key": "Deep", "values": [True], "children": []}]},
            ]},
            {"key": "EmptyWithValue", "values": ["x"], "children": []},
        ]}]}
    module = root.children[0].children[1]
    assert (module.file, module.line, module.where) == ("py.conf", 5, "py.conf:5")


def test_line_continuations_and_multi_line_strings() -> None:
    text = 'A "multi \\\n      line" \\\n  2\nB "raw\nnewline"\r\nC 3'
    root = parse_text(text)
    assert [(n.key, n.values, n.line) for n in root.children] == [
        ("A", ("multi line", 2.0), 1),
        ("B", ("raw\nnewline",), 4),
        ("C", (3.0,), 6),
    ]


def test_crlf_line_ends_and_no_final_newline() -> None:
    root = parse_text("<B x>\r\n  K 1\r\n</B>")
    assert root.children == (ConfNode("B", ("x",), (ConfNode("K", (1.0,)),)),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A", "c.conf:1: option 'A' has no value"),
        ("\n\nA b-c", "c.conf:3: unexpected character '-'"),
        ('A "open', "c.conf:1: quoted string not closed"),
        ("\n<A x>\nK 1\n", "c.conf:2: block <A> is not closed"),
        ("<A x>\nK 1\n</B>\n", "c.conf:3: block <A> opened on line 1 is closed by </B>"),
        ("K 1\n</A>\n", "c.conf:2: </A> closes no open block"),
        ("1 2", "c.conf:1: expected an option name, got '1'"),
        ("true 2", "c.conf:1: expected an option name, got 'true'"),
        ("<A x\nK 1", "c.conf:1: expected '>' to end <A ..."),
        ("A 1 <", "c.conf:1: expected the end of the line, got '<'"),
        ("A \\ 1", "c.conf:1: unexpected '\\' outside quotes"),
        ('A "x\\', "c.conf:1: quoted string not closed"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "c.conf")
    assert str(caught.value).startswith(message)


def test_include_files_directories_filters_and_depth(tmp_path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "b.conf").write_text("B 2\n")
    (conf_d / "a.conf").write_text("A 1\n")
    (conf_d / "skip.txt").write_text("S 0\n")
    (conf_d / ".hidden.conf").write_text("H 0\n")
    (tmp_path / "one.conf").write_text("One 1\n")
    main = tmp_path / "main.conf"
    main.write_text(
        'First 0\nInclude "one.conf"\n<Include "conf.d">\n  Filter "*.conf"\n</Include>\n'
        'Include "nothing-*.conf"\nLast 9\n')
    warnings: list[str] = []
    root = read_config_file(str(main), warnings)
    assert [n.key for n in root.children] == ["First", "One", "A", "B", "Last"]
    assert root.children[2].where == f"{conf_d / 'a.conf'}:1"
    assert warnings and "matches no file" in warnings[0]

    (tmp_path / "loop.conf").write_text('Include "loop.conf"\n')
    with pytest.raises(ConfigError, match="nested Includes"):
        read_config_file(str(tmp_path / "loop.conf"))
    (tmp_path / "bad.conf").write_text('<Include "one.conf">\n  Pattern "x"\n</Include>\n')
    with pytest.raises(ConfigError, match=r"bad.conf:2: option 'Pattern' not allowed"):
        read_config_file(str(tmp_path / "bad.conf"))
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(str(tmp_path / "missing" / "x.conf"))


# --- properties -----------------------------------------------------------------------------------

_KEYS = st.builds(str.__add__, st.sampled_from("ABKxz_"), st.text("abcXYZ019_", max_size=6))
_VALUES = st.one_of(st.booleans(), st.integers(-10**9, 10**9).map(float),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))


def _render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value))
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


_NODES = st.recursive(
    st.builds(lambda k, v: ConfNode(k, tuple(v)), _KEYS, st.lists(_VALUES, min_size=1,
                                                                   max_size=4)),
    lambda children: st.builds(lambda k, v, c: ConfNode(k, tuple(v), tuple(c)), _KEYS,
                               st.lists(_VALUES, max_size=3),
                               st.lists(children, min_size=1, max_size=3)),
    max_leaves=6,
)


def _render(node: ConfNode, depth: int = 0) -> str:
    pad = "  " * depth
    values = " ".join(_render_value(v) for v in node.values)
    if not node.children:
        return f"{pad}{node.key} {values}\n"
    inner = "".join(_render(child, depth + 1) for child in node.children)
    return f"{pad}<{node.key}{' ' if values else ''}{values}>\n{inner}{pad}</{node.key}>\n"


@settings(max_examples=100, deadline=None)
@given(st.lists(_NODES, max_size=3))
def test_rendered_trees_parse_back_the_same(nodes: list[ConfNode]) -> None:
    text = "".join(_render(node) for node in nodes)
    assert parse_text(text).children == tuple(nodes)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('<>/"\\#\r\n \tab1.0x:-_[]eE+')), max_size=40)
       | st.text(max_size=40))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        root = parse_text(text, "fuzz.conf")
    except ConfigError as error:
        assert str(error).startswith("fuzz.conf:")
    else:
        assert root.key == ""
