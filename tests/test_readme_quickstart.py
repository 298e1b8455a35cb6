"""README.rst opens with two commands that work on a fresh machine, then the quick start, then
the reference under a table of contents; the test command is the one .ci/run runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from buckyproc import ROOT

README = (ROOT / "README.rst").read_text()


def literal_blocks(text: str) -> list[str]:
    """The literal blocks (after a paragraph ending in '::'), in order, dedented."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:(?: {4,}.*)?\n)+)", text):
        lines = [line[4:] for line in match.group(1).rstrip("\n").splitlines()]
        blocks.append("\n".join(lines))
    return blocks


def quickstart_config() -> str:
    start = README.index("Save these ten lines as ``/etc/bucky/config.py``::")
    return literal_blocks(README[start:])[0] + "\n"


def test_the_readme_starts_with_the_daemon_and_the_test_command() -> None:
    first, second = literal_blocks(README)[:2]
    assert first == "pip install . && bucky --debug"
    assert second == "pip install -q -e '.[test]' && python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert second in ci, ".ci/run must run README.rst's test command exactly"


def test_the_quick_start_comes_first_and_the_reference_has_a_table_of_contents() -> None:
    contents = README.index(".. contents::")
    quick = README.index("\nQuick start\n===========\n")
    assert README.index("python -m pytest -q") < contents < quick
    assert quick < README.index("\nWhat it does\n============\n")
    assert "bucky-send statsd 'app.hits:1|c'" in README[quick:]
    assert "nc -u" not in README[:README.index("\nWhat it does\n")]


def test_the_quick_start_config_is_ten_lines_that_pass_the_check(tmp_path: Path) -> None:
    config = quickstart_config()
    lines = config.splitlines()
    assert len(lines) == 10 and all(line.strip() for line in lines)
    for wanted in ("collectd_enabled = True", "statsd_enabled = True", "http_enabled = True",
                   "graphite_ip = "):
        assert any(line.startswith(wanted) for line in lines), wanted
    path = tmp_path / "config.py"  # the state folder moved: a test writes nothing in /var/lib
    path.write_text(config + f"directory = {str(tmp_path / 'state')!r}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    check = subprocess.run([sys.executable, "-m", "bucky", "--check", str(path)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().endswith(": OK")
