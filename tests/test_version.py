"""One version: bucky/__init__.py's `__version__`, which `bucky --version`, the package metadata
(setup.py reads it) and the newest entry of CHANGES agree with.

The rule for CHANGES: the version is the newest entry's. While that entry is marked
"(unreleased)" the program may also call itself a pre-release of it (`3.2.0.dev0`). An older
version is never accepted: a program that says 3.0.0 while CHANGES lists 3.1.0's features above
it is exactly the disagreement this test exists to catch.
"""

from __future__ import annotations

import re
import subprocess
import sys

from buckyproc import ROOT

import bucky

_HEADING = re.compile(r"^(\d+\.\d+\.\d+)( \(unreleased\))?$")


def newest_changes_entry(text: str) -> tuple[str, bool]:
    """(version, released) of the first heading (a line underlined with '=') of CHANGES."""
    lines = text.splitlines()
    for line, under in zip(lines, lines[1:], strict=False):
        if under.startswith("===") and len(under) >= len(line.strip()) and line.strip():
            match = _HEADING.match(line.strip())
            assert match, f"CHANGES heading {line!r} is not 'X.Y.Z' or 'X.Y.Z (unreleased)'"
            return match[1], match[2] is None
    raise AssertionError("CHANGES has no heading")


def version_matches_changes(version: str, changes: str) -> bool:
    newest, released = newest_changes_entry(changes)
    if released:
        return version == newest
    return version == newest or re.fullmatch(re.escape(newest) + r"\.dev\d+", version) is not None


def test_the_rule() -> None:
    unreleased = "3.2.0 (unreleased)\n==================\n\n* x\n\n3.1.0\n=====\n"
    assert version_matches_changes("3.2.0", unreleased)
    assert version_matches_changes("3.2.0.dev0", unreleased)
    assert not version_matches_changes("3.1.0", unreleased)  # the reported disagreement
    released = "3.1.0\n=====\n\n* x\n"
    assert version_matches_changes("3.1.0", released)
    assert not version_matches_changes("3.1.0.dev0", released)
    assert not version_matches_changes("3.0.0", released)


def test_the_version_is_the_newest_changes_entry() -> None:
    changes = (ROOT / "CHANGES").read_text(encoding="utf-8")
    assert version_matches_changes(bucky.__version__, changes), (
        f"bucky/__init__.py says {bucky.__version__}, CHANGES' newest entry is "
        f"{newest_changes_entry(changes)}: set __version__ to it (X.Y.Z.dev0 while unreleased), "
        "then python -m bucky --print-man-page > docs/bucky.1")


def test_bucky_version_and_the_package_metadata_say_the_same() -> None:
    shown = subprocess.run([sys.executable, "-m", "bucky", "--version"], cwd=ROOT, check=True,
                           capture_output=True, text=True, timeout=60).stdout
    assert shown.strip() == f"bucky {bucky.__version__}"
    metadata = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, check=True,
                              capture_output=True, text=True, timeout=60).stdout
    assert metadata.strip().splitlines()[-1] == bucky.__version__
