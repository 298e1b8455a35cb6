"""The sdist carries what an operator needs beside the package, and says where it runs."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib

from buckyproc import ROOT


def test_pyproject_declares_a_build_system() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"


def test_sdist_carries_docs_examples_contrib_and_changes(tmp_path) -> None:
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    (archive,) = tmp_path.glob("bucky-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for wanted in ("CHANGES", "README.rst", "LICENSE", "contrib/runit/run", "examples/config.py",
                   "docs/metricsd.rst", "bucky/cli.py", "docs/bucky.1",
                   "contrib/systemd/bucky.service"):
        assert wanted in names, wanted
    metadata = subprocess.run([sys.executable, "setup.py", "--classifiers"], cwd=ROOT,
                              check=True, capture_output=True, text=True, timeout=60).stdout
    assert "Operating System :: POSIX :: Linux" in metadata
    assert "Programming Language :: Python :: 3.11" in metadata


def test_documentation_is_valid_restructuredtext() -> None:
    """README.rst (the package's long description) and bench/README.rst render without warnings."""
    import docutils.core

    for path in ("README.rst", "bench/README.rst", "docs/metricsd.rst"):
        docutils.core.publish_string(
            (ROOT / path).read_text(), writer_name="null",
            settings_overrides={"report_level": 2, "halt_level": 2})


def test_install_puts_the_man_page_in_man1_and_makes_the_commands(tmp_path) -> None:
    subprocess.run([sys.executable, "setup.py", "-q", "install_data", "--install-dir",
                    str(tmp_path / "prefix")], cwd=ROOT, check=True, capture_output=True,
                   timeout=120)
    installed = tmp_path / "prefix" / "share" / "man" / "man1" / "bucky.1"
    assert installed.read_bytes() == (ROOT / "docs" / "bucky.1").read_bytes()
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    entry_points = (tmp_path / "bucky.egg-info" / "entry_points.txt").read_text()
    for command in ("bucky = bucky.cli:main", "bucky-dump = bucky.dump:main",
                    "bucky-send = bucky.send:main"):
        assert command in entry_points
