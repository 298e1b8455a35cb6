"""Where the tests find real peers, and what happens when one is missing.

Every test that needs a real peer (collectd, carbon-cache, carbon-c-relay, npm statsd and its
proxy.js, runit, chromium, a third-party plugin) calls `missing(...)` when the peer is not there.
Locally that skips with the reason; with BUCKY_REQUIRE_PEERS=1 (set by .ci/run, which installs
every peer first) it fails, so CI cannot pass on evidence that silently did not run.

Any other skip (no IPv6 here, not root, a kernel that refuses multicast) is checked too: under
BUCKY_REQUIRE_PEERS=1 a skip fails the run unless its test id matches an entry of
BUCKY_ALLOWED_SKIPS, the short allow-list .ci/run exports, one entry a line:
`<test id or fnmatch pattern> <the reason CI accepts that skip>` (tests/conftest.py applies it).
"""

from __future__ import annotations

import fnmatch
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


def in_ci() -> bool:
    """CI runs (.ci/run, or a CI service that sets CI=true): the tests assert the README's full
    figures, not the shorter local variants."""
    return required() or os.environ.get("CI", "").lower() == "true"


def allowed_skips(text: str | None = None) -> dict[str, str]:
    """BUCKY_ALLOWED_SKIPS parsed: {test id pattern: reason}. An entry without a reason is an
    error: CI must know why it accepts a skip."""
    if text is None:
        text = os.environ.get("BUCKY_ALLOWED_SKIPS", "")
    entries = {}
    for line in text.splitlines():
        pattern, _, reason = line.strip().partition(" ")
        if not pattern or pattern.startswith("#"):
            continue
        if not reason.strip():
            raise ValueError(f"BUCKY_ALLOWED_SKIPS: {pattern} has no reason")
        entries[pattern] = reason.strip()
    return entries


def unlisted_skip(nodeid: str, reason: str) -> str | None:
    """Why a skip of `nodeid` must fail this run (BUCKY_REQUIRE_PEERS=1 and not allow-listed),
    or None when it may stay a skip."""
    if not required():
        return None
    if any(fnmatch.fnmatchcase(nodeid, pattern) for pattern in allowed_skips()):
        return None
    return (f"skipped under BUCKY_REQUIRE_PEERS=1 and not in .ci/run's BUCKY_ALLOWED_SKIPS "
            f"({reason}): run it, or list it there with the reason")


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
