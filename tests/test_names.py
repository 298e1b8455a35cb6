from bucky.config import make_config
from bucky.daemon.outputs.paths import PathCache
from bucky.names import NameRules
from bucky.protocol.graphite import WHITESPACE


def rules(**kw):
    return NameRules.from_config(make_config(**kw))


def test_host_is_reversed_and_prepended():
    assert rules().statname("web01.example.com", "cpu.0.idle") == "com.example.web01.cpu.0.idle"


def test_no_host_leaves_name():
    assert rules().statname(None, "stats.counters.hits.rate") == "stats.counters.hits.rate"


def test_host_trim_removes_first_matching_suffix():
    r = rules(name_host_trim=["example.com", "com"])
    assert r.statname("web01.example.com", "load") == "web01.load"
    assert r.statname("db.other.com", "load") == "other.db.load"
    assert r.statname("localhost", "load") == "localhost.load"


def test_prefix_postfix_and_parts():
    r = rules(name_prefix="servers", name_prefix_parts=["dc1", "rack2"],
              name_postfix="raw", name_postfix_parts=["v1"])
    assert r.statname("h", "m") == "servers.dc1.rack2.h.m.v1.raw"


def test_replace_char_applies_inside_parts():
    assert rules(name_prefix="a.b").statname(None, "x.y") == "a_b.x.y"
    assert rules(name_prefix="a.b", name_replace_char="-").statname(None, "x") == "a-b.x"


def test_strip_duplicates():
    assert rules().statname("cpu", "cpu.cpu.0") == "cpu.0"
    assert rules(name_strip_duplicates=False).statname("cpu", "cpu.0") == "cpu.cpu.0"


def test_tags_are_kept_out_of_the_rules():
    assert rules(name_prefix="p").statname(None, "stats.x;env=prod") == "p.stats.x;env=prod"


def test_results_are_stable():
    r = rules()
    assert r.statname("a.b", "c") == r.statname("a.b", "c") == "b.a.c"


def test_a_finished_graphite_path_is_left_alone_and_is_no_host():
    import marshal

    from bucky.sample import GRAPHITE_PATH

    r = rules(name_prefix="pre", name_postfix="post", name_host_trim=["com"])
    assert r.statname(GRAPHITE_PATH, "servers.web01..load;dc=eu") == "servers.web01..load;dc=eu"
    # The kind is no string, so no host can be taken for it; it survives a channel unchanged.
    assert not isinstance(GRAPHITE_PATH, str)
    assert r.statname("\x00graphite", "x") == "pre.\x00graphite.x.post"
    (back,) = marshal.loads(marshal.dumps([(GRAPHITE_PATH, "a.b", 1, 2)]))
    assert back[0] is GRAPHITE_PATH and r.statname(back[0], back[1]) == "a.b"


def test_every_unicode_space_in_any_part_becomes_an_underscore_in_the_graphite_path():
    """Host, name and configured prefix alike: whatever the input, the Graphite path carries no
    character str.split() (and so carbon) would split the line on."""
    for char in sorted(WHITESPACE):
        paths = PathCache(rules(name_prefix=f"p{char}q", name_postfix=f"x{char}"))
        assert paths.path(f"h{char}1", f"a{char}b") == "p_q.h_1.a_b.x_", hex(ord(char))
