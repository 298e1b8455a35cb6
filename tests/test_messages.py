"""The message vocabulary between processes (bucky.messages): kinds, the decoder, constructors."""

from __future__ import annotations

import marshal
import pickle

import pytest

from bucky import messages
from bucky.messages import (
    BATCH,
    NOTIFICATION,
    PROCS,
    RECORDS,
    SELF_METRICS,
    STATUS,
    TAP,
    kind_of,
    self_metrics,
    self_metrics_gauges,
)


@pytest.mark.parametrize(("msg", "kind"), [
    ([], BATCH),
    ([(None, "a", 1, 2)], BATCH),
    ((SELF_METRICS, [(None, "bucky.x", 1, 2)]), SELF_METRICS),
    ((NOTIFICATION, object()), NOTIFICATION),
    ((RECORDS, []), RECORDS),
    ((PROCS, {}), PROCS),
    ((STATUS, "graphite", {}), STATUS),
    ((TAP, "graphite", []), TAP),
    ((), None),
    ((1, 2), None),
    ("self", None),
    (None, None),
    ({"kind": "self"}, None),
])
def test_kind_of_decodes_every_shape(msg: object, kind: str | None) -> None:
    assert kind_of(msg) == kind


def test_kinds_are_distinct_plain_strings() -> None:
    kinds = [BATCH, SELF_METRICS, NOTIFICATION, RECORDS, PROCS, STATUS, TAP]
    assert len(set(kinds)) == len(kinds) and all(type(k) is str for k in kinds)


def test_self_metrics_round_trip_through_a_channel_encoding() -> None:
    samples = [(None, "bucky.h.output.sent", 3, 1_700_000_000)]
    for msg, gauges in ((self_metrics(samples), ()), (self_metrics(samples, ("q",)), ["q"])):
        for codec in (marshal, pickle):
            back = codec.loads(codec.dumps(msg))
            assert kind_of(back) == SELF_METRICS
            assert back[1] == samples and list(self_metrics_gauges(back)) == list(gauges)


def test_the_module_defines_only_the_documented_kinds() -> None:
    documented = {name for name in dir(messages) if name.isupper()}
    assert documented == {"BATCH", "SELF_METRICS", "NOTIFICATION", "RECORDS", "PROCS", "STATUS",
                          "TAP"}
    for name in documented:
        assert f"{name}" in (messages.__doc__ or "")
