import sys
from pathlib import Path

# Test helpers (buckyproc, fakecarbon, carboncache) live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from peers import unlisted_skip  # noqa: E402


@pytest.fixture(autouse=True)
def _private_spool_root(tmp_path_factory, monkeypatch):
    """Clients built in-process with the default `directory` spool under a per-test directory,
    never in /var/lib/bucky (where one test's leftovers would be replayed into the next)."""
    from bucky.daemon.outputs import spooled_buffer

    real = spooled_buffer.spool_root
    root = tmp_path_factory.mktemp("spool")

    def private(cfg):
        if cfg.graphite_spool_dir is None and cfg.directory == "/var/lib/bucky":
            return str(root)
        return real(cfg)

    monkeypatch.setattr(spooled_buffer, "spool_root", private)


def _fail_unlisted_skip(report) -> None:
    """Under BUCKY_REQUIRE_PEERS=1 a skip CI does not know by name is a failure (tests/peers.py)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    why = unlisted_skip(report.nodeid, reason)
    if why is not None:
        report.outcome = "failed"
        report.longrepr = why


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unlisted_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unlisted_skip(outcome.get_result())
