import sys
from pathlib import Path

# Test helpers (buckyproc, fakecarbon, carboncache) live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402


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
