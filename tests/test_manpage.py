"""bucky(1): docs/bucky.1 is what `bucky --print-man-page` makes from the parser and the option
table, so it names every option the program has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from buckyproc import ROOT

from bucky import config as config_mod
from bucky.cli import build_parser
from bucky.manpage import render

SHIPPED = ROOT / "docs" / "bucky.1"


def test_the_shipped_man_page_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == render(), (
        "docs/bucky.1 is out of date: python -m bucky --print-man-page > docs/bucky.1")


def test_every_command_line_and_config_option_is_in_the_page() -> None:
    page = render()
    for action in build_parser()._actions:  # noqa: SLF001
        for name in action.option_strings:
            assert f"\\fB{name.replace('-', chr(92) + '-')}\\fR" in page, name
    for option in config_mod.OPTIONS:
        assert f"\\fB{option.name}\\fR = " in page, option.name


def test_bucky_prints_it() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    shown = subprocess.run([sys.executable, "-m", "bucky", "--print-man-page"], env=env,
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert shown == render()


def test_groff_renders_it_without_warnings() -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=render(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
