"""End to end against a real carbon-cache: Bucky's Graphite outputs write, whisper files hold it.

Timestamps are current (whisper silently drops points outside its 1 h retention or in the
future); carbon writes about once a second, so every check polls for up to ~10 s.
"""

from __future__ import annotations

import time

import pytest
from carboncache import CarbonCache

from bucky.config import make_config
from bucky.daemon.outputs import GraphiteClient, build_outputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def carbon(tmp_path_factory: pytest.TempPathFactory):
    cache = CarbonCache(tmp_path_factory.mktemp("carbon"))
    with cache:
        yield cache


def _client(port: int, pickle: bool) -> GraphiteClient:
    (client,) = build_outputs(make_config(
        graphite_port=port, graphite_pickle_enabled=pickle, name_prefix="buckytest",
        graphite_reconnect_delay=0.1, graphite_backoff_max=0.5))
    assert isinstance(client, GraphiteClient)
    return client


@pytest.mark.parametrize("pickle", [False, True], ids=["plaintext", "pickle"])
def test_points_land_in_whisper(carbon: CarbonCache, pickle: bool) -> None:
    port = carbon.pickle_port if pickle else carbon.line_port
    client = _client(port, pickle)
    kind = "pickle" if pickle else "plain"
    now = int(time.time()) - 2
    samples = [
        ("web1.example.com", f"{kind}.gauge", 42, now),
        ("web1.example.com", f"{kind}.gauge", 43, now + 1),
        (None, f"{kind}.float", 0.1, now),
        (None, f"{kind}.negative", -5e3, now),
        (None, f"{kind}.big", 12345678901, now),
    ]
    client.send(samples, time.monotonic())
    assert client.flush(time.monotonic() + 10), client.counters
    client.close()
    assert client.counters["sent"] == len(samples)
    gauge = f"buckytest.com.example.web1.{kind}.gauge"
    assert carbon.wait_for_value(gauge, now) == 42, carbon.log()
    assert carbon.wait_for_value(gauge, now + 1) == 43
    assert carbon.wait_for_value(f"buckytest.{kind}.float", now) == 0.1
    assert carbon.wait_for_value(f"buckytest.{kind}.negative", now) == -5000.0
    assert carbon.wait_for_value(f"buckytest.{kind}.big", now) == 12345678901.0
