"""bucky.protocol is sans-I/O: its modules import no sockets, clocks, logging, processes or config.
And the packages above it stay off the daemon: bucky/http and bucky.messages import nothing of
bucky.daemon (the daemon runs them, not the other way round). bucky/aggregate (state over time)
imports at run time only errors, sample, protocol and itself: the config object only as a type,
under `if TYPE_CHECKING:`. README.rst's "Architecture" section, which states these rules, names
only files, classes and functions that exist.

Checked statically (ast) over every module under bucky/protocol/, sub-packages included
(placement/), whoever wrote it: a module may import the standard library minus the I/O, clock
and process modules below, bucky.errors, bucky.sample and bucky.protocol.*, and pycryptodome
(`Crypto`) for the collectd crypto. Only typesdb.py may open files (types.db is read once at
start). No module reads the config object: callers pass plain values (no `cfg` / `config`
parameter or attribute read).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bucky.protocol

PROTOCOL_DIR = Path(bucky.protocol.__file__).resolve().parent
MODULES = sorted(PROTOCOL_DIR.rglob("*.py"))
IDS = [p.relative_to(PROTOCOL_DIR).as_posix() for p in MODULES]
CONFIG_NAMES = {"cfg", "config", "conf"}  # what a config object is called across Bucky

FORBIDDEN = {
    "socket", "socketserver", "ssl", "select", "selectors", "asyncio",  # network I/O
    "logging", "syslog",  # logging belongs to the daemon
    "multiprocessing", "threading", "subprocess", "signal", "concurrent",  # processes
    "time",  # clocks: callers pass `now`
    "bucky.config",
}  # fmt: skip
# bucky.addresses: the one address formatter (text only, imports nothing of Bucky's)
ALLOWED_BUCKY = ("bucky.errors", "bucky.sample", "bucky.protocol", "bucky.addresses")
ALLOWED_THIRD_PARTY = {"Crypto", "mmh3"}  # mmh3: imported lazily by placement (fast-hashing)
MAY_OPEN_FILES = {"typesdb.py"}  # relative to bucky/protocol/


def imported_modules(tree: ast.Module, package: str = "bucky.protocol") -> list[str]:
    """Every module a file imports, at any depth (function-level imports too)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside `package`
                names.append(package + (f".{node.module}" if node.module else ""))
            elif node.module:
                names.append(node.module)
                names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def config_reads(tree: ast.Module) -> list[str]:
    """Where a module takes or reads a config object: parameters named like one, `cfg.x`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in CONFIG_NAMES:
            found.append(f"line {node.lineno}: parameter {node.arg}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in CONFIG_NAMES):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_every_protocol_module_is_checked() -> None:
    assert set(IDS) >= {"collectd.py", "collectd_records.py", "typesdb.py",
                        "placement/__init__.py", "placement/router.py", "placement/rings.py"}


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_protocol_module_imports_nothing_with_side_effects(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    problems = []
    for name in imported_modules(tree):
        top = name.split(".")[0]
        if any(is_under(name, bad) for bad in FORBIDDEN):
            problems.append(f"imports {name}")
        elif top == "bucky":
            # `from bucky.protocol import x` yields the names bucky.protocol and .x: both fine.
            if not any(is_under(name, ok) for ok in ALLOWED_BUCKY) and name != "bucky":
                problems.append(f"imports {name} (only errors, sample, addresses, protocol.*)")
        elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
            problems.append(f"imports third-party {name}")
    assert problems == [], f"{path.name}: {problems}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_only_typesdb_opens_files(path: Path) -> None:
    if path.relative_to(PROTOCOL_DIR).as_posix() in MAY_OPEN_FILES:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    calls = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
        in {"open", "fdopen", "read_text", "read_bytes", "write_text", "write_bytes"}
    ]
    assert calls == [], f"{path.name} opens files at lines {calls}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_protocol_module_reads_no_config_object(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    assert config_reads(tree) == [], f"{path.name} reads a config object"


def test_the_checker_catches_forbidden_imports() -> None:
    bad = ast.parse("import socket\nfrom time import monotonic\nfrom bucky.config import x\n")
    names = imported_modules(bad)
    assert [n for n in names if any(is_under(n, f) for f in FORBIDDEN)] == [
        "socket",
        "time",
        "time.monotonic",
        "bucky.config",
        "bucky.config.x",
    ]


def test_the_checker_catches_config_reads() -> None:
    bad = ast.parse("def plan(cfg):\n    return cfg.graphite_port\n"
                    "def ok(values, port):\n    return values['graphite_port'], port\n")
    assert config_reads(bad) == ["line 1: parameter cfg", "line 2: cfg.graphite_port"]


def _imports_under(package_dir: Path, package: str, forbidden: str) -> dict[str, list[str]]:
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bad = sorted({n for n in imported_modules(tree, package) if is_under(n, forbidden)})
        if bad:
            found[str(path.relative_to(package_dir.parent))] = bad
    return found


def test_http_imports_nothing_of_the_daemon() -> None:
    import bucky.http

    http_dir = Path(bucky.http.__file__).resolve().parent
    assert (http_dir / "server.py").exists() and (http_dir / "state.py").exists()
    assert _imports_under(http_dir, "bucky.http", "bucky.daemon") == {}


def test_the_message_vocabulary_imports_nothing_of_bucky() -> None:
    import bucky.messages

    tree = ast.parse(Path(bucky.messages.__file__).read_text(encoding="utf-8"))
    assert [n for n in imported_modules(tree, "bucky") if is_under(n, "bucky")] == []


def test_the_package_checker_finds_nested_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from bucky.daemon.channels import Channel\n")
    (package / "b.py").write_text("from .c import x\nimport bucky.names\n")
    assert _imports_under(package, "bucky.daemon", "bucky.daemon") == {
        "pkg/a.py": ["bucky.daemon.channels", "bucky.daemon.channels.Channel"],
        "pkg/b.py": ["bucky.daemon.c"],
    }


def test_inputs_import_nothing_of_the_daemon() -> None:
    """bucky/inputs/ implement the input contract; processes, sockets and channels are the
    daemon's, which imports the inputs, never the other way round."""
    import bucky.inputs

    inputs_dir = Path(bucky.inputs.__file__).resolve().parent
    assert (inputs_dir / "statsd_workers.py").exists() and (inputs_dir / "carbon.py").exists()
    assert _imports_under(inputs_dir, "bucky.inputs", "bucky.daemon") == {}


def runtime_imports(tree: ast.Module, package: str) -> list[str]:
    """imported_modules, minus what an `if TYPE_CHECKING:` block imports (types only)."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING",
                                                                    "typing.TYPE_CHECKING"}:
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    kept = ast.Module(body=[], type_ignores=[])
    kept.body = [n for n in ast.walk(tree)
                 if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in hidden]
    return imported_modules(kept, package)


AGGREGATE_MAY_IMPORT = ("bucky.errors", "bucky.sample", "bucky.protocol", "bucky.aggregate")


def test_aggregate_imports_only_what_is_below_it() -> None:
    import bucky.aggregate

    aggregate_dir = Path(bucky.aggregate.__file__).resolve().parent
    found = {}
    for path in sorted(aggregate_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bad = sorted({n for n in runtime_imports(tree, "bucky.aggregate")
                      if is_under(n, "bucky") and n != "bucky"
                      and not any(is_under(n, ok) for ok in AGGREGATE_MAY_IMPORT)})
        if bad:
            found[path.name] = bad
    assert (aggregate_dir / "statsd.py").exists() and found == {}


def test_the_runtime_checker_skips_type_checking_imports_only() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "import bucky.daemon\n"
                     "if TYPE_CHECKING:\n    from bucky.config import Config\n"
                     "def f():\n    from bucky.names import NameRules\n")
    names = [n for n in runtime_imports(tree, "bucky.aggregate") if is_under(n, "bucky")]
    assert names == ["bucky.daemon", "bucky.names", "bucky.names.NameRules"]


def test_the_readmes_architecture_names_only_what_exists() -> None:
    """README.rst's "Architecture" describes these layers: each file, folder, class and function
    it names must exist (a reshape that renames one updates the README)."""
    import re

    root = Path(bucky.protocol.__file__).resolve().parents[2]
    readme = (root / "README.rst").read_text(encoding="utf-8")
    section = readme[readme.index("\nArchitecture\n====="):readme.index("\nDevelopment\n=====")]
    files = [p.relative_to(root).as_posix() for p in (root / "bucky").rglob("*")]
    files += [p.relative_to(root).as_posix() for p in (root / "tests").rglob("*.py")]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (root / "bucky").rglob("*.py"))
    missing = []
    for name in re.findall(r"``([^`]+)``", section):
        if name.endswith((".py", "/")):
            if not any(f == name.rstrip("/") or f.endswith("/" + name.rstrip("/")) for f in files):
                missing.append(name)
        elif re.fullmatch(r"(\w+\.)?[A-Za-z_]\w*(\(.*\))?", name) and not name.startswith("-"):
            ident = re.sub(r"\(.*\)", "", name).split(".")[-1]
            if ident[0].isupper() or "_" in ident or "(" in name:
                defined = re.search(rf"^\s*(def|class) {ident}\b|^{ident}\s*=", source, re.M)
                if not defined and not any(f.endswith(f"/{ident}.py") for f in files):
                    missing.append(name)
    assert "``bucky/protocol/``" in section
    assert missing == []
