"""CollectdInput: the handler contract, security and auth-file reload, the capture vectors."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import struct
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucky import dump
from bucky.config import make_config
from bucky.errors import ConfigError
from bucky.inputs.collectd import CollectdInput, CollectdPipeline
from bucky.protocol.collectd import encode
from bucky.protocol.collectd_records import (
    COUNTER,
    DERIVE,
    FAILURE,
    GAUGE,
    OKAY,
    WARNING,
    Notification,
    ValueList,
)

DATA = Path(__file__).resolve().parent.parent / "data"
VECTORS = DATA / "collectd"
TYPES_DB = str(DATA / "collectd_input" / "types.db")
T0 = 1700000000.0


class FakeSink:
    def __init__(self, wants_records: bool = False) -> None:
        self.batches: list[list[tuple]] = []
        self.notifications: list[Any] = []
        self.record_batches: list[list[Any]] = []
        self.wants_records = wants_records

    @property
    def samples(self) -> list[tuple]:
        return [s for batch in self.batches for s in batch]

    def extend(self, samples: list[tuple]) -> None:
        self.batches.append(list(samples))

    def append(self, sample: tuple) -> None:
        self.batches.append([sample])

    def notify(self, record: Any) -> None:
        self.notifications.append(record)

    def records(self, value_lists: list[Any]) -> None:
        self.record_batches.append(value_lists)


def config(**overrides: Any) -> Any:
    overrides.setdefault("collectd_types", (TYPES_DB,))
    overrides.setdefault("collectd_use_entry_points", False)
    return make_config(**overrides)


def unchecked_config(**overrides: Any) -> Any:
    """A config object with combinations make_config() itself refuses."""
    cfg = config()
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    values.update(overrides)
    return types.SimpleNamespace(**values)


def value_list(t: float, value: float | int = 1.0, kind: int = GAUGE, type_: str = "gauge",
               **kw: Any) -> ValueList:
    fields = dict(host="web-01", plugin="app", plugin_instance="", type=type_,
                  type_instance="", time=t, interval=10.0, values=((kind, value),))
    fields.update(kw)
    return ValueList(**fields)


def datagram(*records: Any, **kw: Any) -> bytes:
    [data] = encode(list(records), **kw)
    return data


def read_pkts(path: Path) -> list[bytes]:
    with path.open("rb") as fh:
        return list(dump.read_pkts(fh))


# -- the handler contract -------------------------------------------------------------------------

def test_one_extend_per_datagram_with_plain_tuples():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    assert inp.name == "collectd"
    inp.handle(datagram(value_list(T0, 1.5), value_list(T0, 2.5, type_instance="b")),
               ("127.0.0.1", 5000), now=1.0)
    assert sink.batches == [[("web-01", "app.gauge", 1.5, 1700000000),
                             ("web-01", "app.gauge.b", 2.5, 1700000000)]]
    assert all(type(s) is tuple for s in sink.samples)
    assert inp.counters["datagrams"] == 1 and inp.counters["values"] == 2
    assert inp.counters["samples"] == 2 and inp.counters["value_lists"] == 2


def test_rates_across_datagrams():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    for i, value in enumerate((1000, 1500, 1500)):
        inp.handle(datagram(value_list(T0 + 10 * i, value, DERIVE, "derive", plugin="d")),
                   None, now=float(i))
    assert sink.samples == [("web-01", "d.derive", 50.0, 1700000010),
                            ("web-01", "d.derive", 0.0, 1700000020)]


def test_no_extend_when_nothing_to_emit():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    inp.handle(datagram(value_list(T0, 5, COUNTER, "counter")), None, now=0.0)
    assert sink.batches == [] and inp.counters["primed"] == 1


def test_notifications_are_counted_logged_and_passed_on_never_sent_as_data(caplog):
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    notes = [Notification("web-01", "app", "", "", "", T0, sev, f"msg {sev}")
             for sev in (FAILURE, WARNING, OKAY)]
    caplog.set_level(logging.INFO, logger="bucky.inputs.collectd")
    for note in notes:
        inp.handle(datagram(note, value_list(T0, 1.0)), None, now=0.0)
    assert sink.notifications == notes
    assert sink.samples == [("web-01", "app.gauge", 1.0, 1700000000)] * 3
    assert inp.counters["notifications"] == 3 and inp.counters["notifications.failure"] == 1
    levels = {r.getMessage().split()[2]: r.levelno for r in caplog.records}
    assert levels == {"FAILURE": logging.ERROR, "WARNING": logging.WARNING, "OKAY": logging.INFO}


def test_notifications_are_logged_rate_limited(caplog):
    inp = CollectdInput(config(), FakeSink())
    note = Notification("h", "p", "", "", "", T0, FAILURE, "disk full")
    with caplog.at_level(logging.INFO, logger="bucky.inputs.collectd"):
        for i in range(50):
            inp.handle(datagram(note), None, now=float(i))
        inp.handle(datagram(note), None, now=61.0)
    assert inp.counters["notifications"] == 51
    assert len(caplog.records) == 2 and "49 similar" in caplog.records[1].getMessage()


def test_records_go_to_a_sink_that_wants_them():
    sink = FakeSink(wants_records=True)
    inp = CollectdInput(config(), sink)
    vls = [value_list(T0, 1.0), value_list(T0, 2.0, type="nosuchtype")]
    inp.handle(datagram(*vls, Notification("h", "p", "", "", "", T0, OKAY, "ok")), None, 0.0)
    assert sink.record_batches == [vls]  # every decoded value list, even those not turned into data
    assert len(sink.samples) == 1


def test_sink_without_records_is_never_asked():
    sink = FakeSink(wants_records=False)
    CollectdInput(config(), sink).handle(datagram(value_list(T0)), None, 0.0)
    assert sink.record_batches == []


def test_unknown_type_rejected_and_warned_once(caplog):
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    with caplog.at_level(logging.WARNING, logger="bucky.inputs.collectd"):
        for i in range(3):
            inp.handle(datagram(value_list(T0 + i, type="nosuchtype"), value_list(T0 + i)),
                       None, now=float(i))
    assert inp.counters["rejected.unknown_type"] == 3 and len(sink.samples) == 3
    assert len(caplog.records) == 1 and "nosuchtype" in caplog.records[0].getMessage()


def test_type_mismatch_with_types_db_rejected():
    inp = CollectdInput(config(), FakeSink())
    inp.handle(datagram(value_list(T0, 7, COUNTER, type="derive")), None, 0.0)
    assert inp.counters["rejected.ds_type_mismatch"] == 1


def test_counter_eq_derive_option():
    sink = FakeSink()
    inp = CollectdInput(config(collectd_counter_eq_derive=True), sink)
    for i, v in enumerate((10, 30)):
        inp.handle(datagram(value_list(T0 + i * 10, v, COUNTER, type="derive")), None, 0.0)
    assert [s[2] for s in sink.samples] == [2.0]


def test_converters_from_config_and_drops():
    def web(sample):
        return None if sample["type_instance"] == "skip" else ["web", sample["type_instance"]]

    sink = FakeSink()
    inp = CollectdInput(config(collectd_converters={"app": web}), sink)
    inp.handle(datagram(value_list(T0, 1.0, type_instance="a"),
                        value_list(T0, 2.0, type_instance="skip")), None, 0.0)
    assert sink.samples == [("web-01", "web.a", 1.0, 1700000000)]
    assert inp.counters["dropped.converter_none"] == 1


def test_hostile_identifiers_never_reach_a_path():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    inp.handle(datagram(value_list(T0, 1.0, host="bad host\n", plugin="a\tb", plugin_instance="c d",
                                   type_instance="x\ny;t=1")), None, 0.0)
    [(host, name, _, _)] = sink.samples
    assert (host, name) == ("bad_host_", "a_b.c_d.gauge.x_y_t=1")


def test_handler_never_raises_on_sink_failure(caplog):
    class BrokenSink(FakeSink):
        def extend(self, samples):
            raise RuntimeError("boom")

    inp = CollectdInput(config(), BrokenSink())
    with caplog.at_level(logging.ERROR, logger="bucky.inputs.collectd"):
        inp.handle(datagram(value_list(T0)), None, 0.0)
        inp.handle(datagram(value_list(T0 + 1)), None, 1.0)
    assert inp.counters["errors.internal"] == 2
    assert len(caplog.records) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise(data):
    inp = CollectdInput(config(), FakeSink())
    inp.handle(data, ("192.0.2.1", 1), now=0.0)
    inp.tick(0.5)
    assert inp.counters["datagrams"] == 1
    assert inp.counters["errors.internal"] == 0


def test_bad_datagrams_counted_by_reason_and_logged_once_a_minute(caplog):
    inp = CollectdInput(config(), FakeSink())
    with caplog.at_level(logging.WARNING, logger="bucky.inputs.collectd"):
        for i in range(100):
            inp.handle(b"\x00\x00\x00\x02garbage", ("192.0.2.1", 1), now=float(i) / 10)
    reasons = {k: v for k, v in inp.counters.items() if k.startswith("bad_datagrams.")}
    assert sum(reasons.values()) >= 100 and len(reasons) == 1
    assert len(caplog.records) == 1


def test_truncated_vector_datagrams_never_raise():
    inp = CollectdInput(config(), FakeSink())
    packet = read_pkts(VECTORS / "plain.pkts")[0]
    for end in range(0, len(packet), 7):
        inp.handle(packet[:end], None, now=0.0)
    assert inp.counters["errors.internal"] == 0


def test_close_and_tick_are_safe():
    inp = CollectdInput(config(), FakeSink())
    inp.tick(0.0)
    inp.close(1.0)


# -- state hand-over ------------------------------------------------------------------------------

def test_carry_state_keeps_rates_over_a_reload():
    old_sink, new_sink = FakeSink(), FakeSink()
    old = CollectdInput(config(), old_sink)
    old.handle(datagram(value_list(T0, 100, COUNTER, "counter")), None, now=0.0)
    state = pickle.loads(pickle.dumps(old.carry_state()))
    new = CollectdInput(config(), new_sink, state=state)
    new.handle(datagram(value_list(T0 + 10, 300, COUNTER, "counter")), None, now=10.0)
    assert [s[2] for s in new_sink.samples] == [20.0]


def test_series_expire_from_tick():
    inp = CollectdInput(config(collectd_series_ttl_intervals=2), FakeSink())
    inp.handle(datagram(value_list(T0, 1, COUNTER, "counter", interval=1.0)), None, now=0.0)
    assert len(inp.pipeline.aggregator) == 1
    inp.tick(1.0)
    inp.tick(7.0)
    assert len(inp.pipeline.aggregator) == 0


def test_series_expiry_runs_on_the_monotonic_clock():
    """README "Clock steps": a wall-clock step neither expires every series nor keeps dead ones."""
    sink = FakeSink()
    inp = CollectdInput(config(collectd_series_ttl_intervals=2), sink)
    wall = 1_700_000_000.0
    for i in range(3):  # the sender's values arrive every 10 s; the receiver's wall clock jumps
        inp.handle(datagram(value_list(T0 + 10 * i, 100 * i, COUNTER, "counter")), None,
                   wall + 7200 * i, 10.0 * i)
        inp.tick(wall + 7200 * i + 1, 10.0 * i + 1)
    assert [s[2] for s in sink.samples] == [10.0, 10.0]  # no series expired by the steps
    inp.tick(wall - 3600, 50.0)  # an hour back, but 30 s idle on the monotonic clock
    assert len(inp.pipeline.aggregator) == 0


# -- security and the auth file -------------------------------------------------------------------

def write_auth(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_security_levels(tmp_path):
    auth = tmp_path / "auth"
    write_auth(auth, "alice: secret\n", 1_000_000)
    plain = datagram(value_list(T0))
    signed = datagram(value_list(T0, 2.0), security_level=1, username="alice", password="secret")
    encrypted = datagram(value_list(T0, 3.0), security_level=2, username="alice",
                         password="secret")
    for level, accepted in ((0, [1.0, 2.0, 3.0]), (1, [2.0, 3.0]), (2, [3.0])):
        sink = FakeSink()
        inp = CollectdInput(config(collectd_security_level=level, collectd_auth_file=str(auth)),
                            sink)
        for data in (plain, signed, encrypted):
            inp.handle(data, None, now=0.0)
        assert [s[2] for s in sink.samples] == accepted, level


def test_sign_without_auth_file_is_a_config_error():
    with pytest.raises(ConfigError):
        CollectdInput(unchecked_config(collectd_security_level=1, collectd_auth_file=None),
                      FakeSink())


def test_unreadable_or_empty_auth_file_at_start_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="collectd_auth_file"):
        CollectdInput(unchecked_config(collectd_security_level=1,
                                       collectd_auth_file=str(tmp_path / "missing")), FakeSink())
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(ConfigError, match="no 'user: password'"):
        CollectdInput(config(collectd_security_level=1, collectd_auth_file=str(empty)),
                      FakeSink())


def test_auth_file_reload(tmp_path, caplog):
    auth = tmp_path / "auth"
    write_auth(auth, "alice: secret\n", 1_000_000)
    sink = FakeSink()
    inp = CollectdInput(config(collectd_security_level=1, collectd_auth_file=str(auth)), sink)
    from_bob = datagram(value_list(T0, 5.0), security_level=1, username="bob", password="pw")
    inp.handle(from_bob, None, now=0.0)
    assert sink.samples == [] and inp.counters["bad_datagrams.unknown-user"] == 1

    inp.tick(0.0)  # first check: file unchanged, nothing reloaded
    write_auth(auth, "alice: secret\nbob: pw\n", 1_000_100)
    inp.tick(0.5)  # checked at most once a second: not yet seen
    inp.handle(from_bob, None, now=0.5)
    assert sink.samples == []
    inp.tick(1.0)
    assert inp.counters["auth_file.reloads"] == 1
    inp.handle(from_bob, None, now=1.0)
    assert [s[2] for s in sink.samples] == [5.0]

    # a vanished or unreadable file is logged, and the last good credentials stay
    auth.unlink()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="bucky.inputs.collectd"):
        for i in range(2, 10):
            inp.tick(float(i))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert inp.counters["errors.auth_file"] == 8 and len(errors) == 1
    inp.handle(from_bob, None, now=10.0)
    assert len(sink.samples) == 2

    auth.write_bytes(b"bob: \xff\xfe\n")  # not UTF-8: unreadable, keep the old credentials
    inp.tick(11.0)
    assert inp.counters["errors.auth_file"] == 9
    write_auth(auth, "alice: secret\n", 1_000_200)  # bob removed
    inp.tick(12.0)
    inp.handle(from_bob, None, now=12.0)
    assert len(sink.samples) == 2 and inp.counters["auth_file.reloads"] == 2


def test_auth_file_same_size_new_content_is_reloaded(tmp_path):
    auth = tmp_path / "auth"
    write_auth(auth, "bob: aa\n", 1_000_000)
    sink = FakeSink()
    inp = CollectdInput(config(collectd_security_level=1, collectd_auth_file=str(auth)), sink)
    write_auth(auth, "bob: bb\n", 1_000_001)
    inp.tick(5.0)
    inp.handle(datagram(value_list(T0), security_level=1, username="bob", password="bb"), None,
               5.0)
    assert len(sink.samples) == 1


def test_system_plugin_names_from_a_real_capture_are_bucky2s():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    for i, packet in enumerate(read_pkts(VECTORS / "plain.pkts")):
        inp.handle(packet, None, now=float(i))
    names = {name for host, name, _, _ in sink.samples if host == "vec-collector-01"}
    assert {"cpu.0.user", "cpu.1.idle", "memory.used", "memory.slab_recl", "load.load.shortterm",
            "load.load.longterm", "interface.lo.if_octets.rx", "interface.lo.if_packets.tx",
            "df.root.df_complex.free", "tail.applog.counter.requests",
            "tail.applog.absolute.batch"} <= names
    assert all(n.split(".")[0] in {"cpu", "memory", "load", "interface", "df", "tail"}
               for n in names)


# -- the pipeline alone (as the Python plugin host uses it) ---------------------------------------

def test_pipeline_without_decoding():
    pipeline = CollectdPipeline(config())
    out = pipeline.process([value_list(T0, 3, DERIVE, "derive"),
                            value_list(T0 + 10, 23, DERIVE, "derive")], now=0.0)
    assert out == [("web-01", "app.derive", 2.0, 1700000010)]
    assert pipeline.counters["samples"] == 1


def test_pipeline_bad_converter_config_is_a_config_error():
    with pytest.raises(ConfigError, match="PLUGIN"):
        CollectdPipeline(config(collectd_converters=[lambda s: ["x"]]))


# -- every capture vector: rates equal the sidecar's collectd_rates -------------------------------

def identity_converter(sample: dict[str, Any]) -> list[str]:
    """One name part that keeps the identifier + DS name recoverable."""
    return ["|".join([sample["plugin"], sample["plugin_instance"], sample["type"],
                      sample["type_instance"], sample["value_name"]])]


identity_converter.PRIORITY = 100  # type: ignore[attr-defined]


@pytest.mark.parametrize("sidecar", sorted(VECTORS.glob("*.json")), ids=lambda p: p.stem)
def test_vectors_give_collectd_rates(sidecar, tmp_path):
    meta = json.loads(sidecar.read_text())
    options: dict[str, Any] = {
        "collectd_converters": dict.fromkeys(("_default", "cpu", "interface", "memory"),
                                             identity_converter),
    }
    if meta["auth_file_line"]:
        auth = tmp_path / "auth"
        auth.write_text(meta["auth_file_line"] + "\n")
        options["collectd_auth_file"] = str(auth)
        options["collectd_security_level"] = meta["security_level"]
    sink = FakeSink()
    inp = CollectdInput(config(**options), sink)
    for i, packet in enumerate(read_pkts(VECTORS / meta["pkts_file"])):
        inp.handle(packet, ("127.0.0.1", 40000), now=float(i))
    assert not [k for k in inp.counters if k.startswith(("bad_datagrams", "rejected"))]

    got: dict[tuple, float] = {}
    for host, name, value, ts in sink.samples:
        assert (host, name, ts) not in got
        got[(host, name, ts)] = value
    compared = 0
    for ev in meta["expected_values"]:
        for ds_name, rate in zip(ev["dsnames"], ev["collectd_rates"], strict=True):
            key = (ev["host"], "|".join([ev["plugin"], ev["plugin_instance"], ev["type"],
                                         ev["type_instance"], ds_name]), int(ev["time"]))
            value = got.pop(key, None)
            if rate is None or rate == "NaN":  # priming; and NaN is never sent (documented)
                assert value is None, key
            else:
                assert value == rate or math.isclose(value, rate, rel_tol=1e-12), key
                compared += 1
    assert compared > 0
    if meta["expected_exact"]:
        assert got == {}
    assert len(sink.notifications) == len(meta["expected_notifications"])


def test_a_skipped_unknown_part_is_not_a_bad_datagram():
    sink = FakeSink()
    inp = CollectdInput(config(), sink)
    unknown_part = struct.pack(">HH", 0x7777, 8) + b"abcd"  # a part type from a newer collectd
    inp.handle(unknown_part + datagram(value_list(T0, 4.5)), ("127.0.0.1", 5000), now=1.0)
    assert sink.samples == [("web-01", "app.gauge", 4.5, 1700000000)]
    assert inp.counters["skipped_parts.unknown-part"] == 1
    assert not any(key.startswith("bad_datagrams.") for key in inp.counters)
