"""Where the tests find real peers, and what happens when one is missing.

Every test that needs a real peer (collectd, carbon-cache, carbon-c-relay, npm statsd and its
proxy.js, runit, chromium, a third-party plugin) calls `missing(...)` when the peer is not there.
Locally that skips with the reason; with BUCKY_REQUIRE_PEERS=1 (set by .ci/run, which installs
every peer first) it fails, so CI cannot pass on evidence that silently did not run.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

# .ci/run installs the npm packages (statsd 0.9.0, pinned) here; a test never fetches them.
PEERS_DIR = Path(os.environ.get("BUCKY_PEERS_DIR", "/opt/bucky-peers"))


def required() -> bool:
    return os.environ.get("BUCKY_REQUIRE_PEERS", "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip (locally) or fail (CI) because a real peer is not available."""
    if required():
        pytest.fail(f"required peer missing (BUCKY_REQUIRE_PEERS=1): {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def executable(name: str, package: str, *candidates: str) -> str:
    """The path of a peer's program, found on PATH or at one of `candidates`."""
    found = shutil.which(name)
    for path in candidates:
        if not found and os.access(path, os.X_OK):
            found = path
    if not found:
        missing(f"{name} is not installed (Debian package {package})")
    return found


def client_library(module: str) -> ModuleType:
    """A third-party client library from PyPI (the test extras install it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"the {module} package is not installed (pip install -e '.[test]')")


def npm_package(name: str) -> Path:
    """An npm package installed by .ci/run under PEERS_DIR/node_modules (needs node too)."""
    if shutil.which("node") is None:
        missing("node is not installed (Debian package nodejs)")
    path = PEERS_DIR / "node_modules" / name
    if not (path / "package.json").exists():
        missing(f"npm package {name} is not installed in {PEERS_DIR} "
                f"(npm install --prefix {PEERS_DIR} {name}; .ci/run does this)")
    return path
