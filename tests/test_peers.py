"""tests/peers.py and the skip check in tests/conftest.py: under BUCKY_REQUIRE_PEERS=1 a skip
fails the run unless .ci/run's BUCKY_ALLOWED_SKIPS lists it by name with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from peers import allowed_skips, unlisted_skip

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
CI_RUN = TESTS.parent / ".ci" / "run"


def test_allowed_skips_need_a_reason():
    assert allowed_skips("\n  # a comment\n tests/a.py::t_*  no route here \n") == {
        "tests/a.py::t_*": "no route here"}
    with pytest.raises(ValueError, match="no reason"):
        allowed_skips("tests/a.py::t\n")


def test_a_skip_fails_only_when_required_and_unlisted(monkeypatch):
    monkeypatch.delenv("BUCKY_REQUIRE_PEERS", raising=False)
    assert unlisted_skip("tests/a.py::t", "no IPv6") is None
    monkeypatch.setenv("BUCKY_REQUIRE_PEERS", "1")
    monkeypatch.setenv("BUCKY_ALLOWED_SKIPS", "tests/a.py::t_v6*  the container has no IPv6\n")
    assert unlisted_skip("tests/a.py::t_v6_multicast", "no IPv6") is None
    assert "no IPv6" in unlisted_skip("tests/a.py::t_root", "no IPv6")


def test_ci_run_lists_each_allowed_skip_with_its_reason(monkeypatch):
    """The allow-list .ci/run exports parses, and names tests that exist."""
    text = CI_RUN.read_text()
    start = text.index("BUCKY_ALLOWED_SKIPS='") + len("BUCKY_ALLOWED_SKIPS='")
    entries = allowed_skips(text[start : text.index("'", start)])
    assert 1 <= len(entries) <= 10
    for pattern in entries:
        path, _, name = pattern.partition("::")
        assert name.rstrip("*") in (TESTS.parent / path).read_text(), pattern


@pytest.mark.parametrize(("required", "allowed", "outcome"), [
    ("0", "", {"skipped": 2}),
    ("1", "", {"failed": 1, "errors": 1}),
    ("1", "test_probe.py::test_*  the probe says why\n", {"skipped": 2}),
])
def test_the_conftest_hook_in_a_real_run(pytester, monkeypatch, required, allowed, outcome):
    for helper in ("conftest.py", "peers.py"):
        shutil.copy(TESTS / helper, pytester.path / helper)
    pytester.makepyfile(test_probe="""
        import pytest

        def test_runtime_skip():
            pytest.skip("no IPv6 here")

        @pytest.mark.skipif(True, reason="needs root")
        def test_marked_skip():
            pass
    """)
    monkeypatch.setenv("BUCKY_REQUIRE_PEERS", required)
    monkeypatch.setenv("BUCKY_ALLOWED_SKIPS", allowed)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcome)
    if required == "1" and not allowed:
        result.stdout.fnmatch_lines(["*not in .ci/run's BUCKY_ALLOWED_SKIPS (no IPv6 here)*"])
