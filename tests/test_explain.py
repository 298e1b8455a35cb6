"""`bucky --explain`: golden outputs for StatsD lines, Graphite lines and the collectd captures,
and the promise that nothing is opened or sent.

Regenerate the golden files after an intended change with BUCKY_REGEN_GOLDEN=1 (then review the
diff: it is the behaviour change)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bucky import config as config_mod
from bucky.explain import explain_text

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "explain"
CAPTURES = ROOT / "tests" / "data" / "collectd"
NOW = 1_700_000_003.0
REGEN = os.environ.get("BUCKY_REGEN_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    text = text.replace(str(ROOT), "ROOT")
    path = DATA / f"{name}.golden"
    if REGEN:
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path} (BUCKY_REGEN_GOLDEN=1 to update)"


def test_statsd_golden() -> None:
    cfg, _ = config_mod.load(str(DATA / "statsd_config.py"))
    text = explain_text(cfg, "statsd", (DATA / "statsd.txt").read_bytes(), NOW)
    check_golden("statsd", text)
    # What the golden shows, in words: the name rules apply, the processor renames and drops.
    assert "graphite: prod.stats_counts.api.requests 5.0 1700000010 -> 127.0.0.1:2003" in text
    assert "graphite: prod.stats.timers.api.latency.upper_ms 30.0 1700000010" in text
    assert "processor: dropped" in text
    assert "bad line (" in text


def test_graphite_golden_on_a_cluster() -> None:
    cfg = config_mod.make_config(
        name_prefix="never", carbon_enabled=True,
        graphite_destinations=["127.0.0.1:2004:a", "127.0.0.2:2004:b", "127.0.0.3:2004:c"],
        graphite_relay_method="consistent-hashing", graphite_hash_type="carbon_ch",
        graphite_replication_factor=2)
    text = explain_text(cfg, "graphite", (DATA / "graphite.txt").read_bytes(), NOW)
    check_golden("graphite", text)
    assert "never." not in text  # carbon-input paths pass the name rules unchanged
    assert "graphite: now.please 1 1700000003 -> " in text  # -1 means now
    assert "bad line (fields)" in text and "dropped: NaN" in text


@pytest.mark.parametrize("options,normalized", [
    ({}, False),  # one destination: nothing to route, names go out as given
    ({"graphite_destinations": ["127.0.0.1:2004:a", "127.0.0.2:2004:b"],
      "graphite_relay_method": "broadcast"}, False),
    ({"graphite_destinations": ["127.0.0.1:2004:a", "127.0.0.2:2004:b"]}, True),  # hashed
])
def test_a_tagged_name_is_shown_as_the_output_sends_it(options: dict, normalized: bool) -> None:
    from bucky.daemon.outputs import build_outputs
    from bucky.sample import GRAPHITE_PATH

    cfg = config_mod.make_config(carbon_enabled=True, **options)
    text = explain_text(cfg, "graphite", b"cpu;b=2;a=1 1 1700000003\n", NOW)
    (client,) = build_outputs(cfg)
    sent = client._paths.path(GRAPHITE_PATH, "cpu;b=2;a=1").rstrip()  # type: ignore[attr-defined]
    client.close()
    assert sent == ("cpu;a=1;b=2" if normalized else "cpu;b=2;a=1")
    assert f"graphite: {sent} 1 1700000003" in text
    assert ("normalized from" in text) is normalized


@pytest.mark.parametrize("capture", ["plain", "signed", "encrypted", "alltypes",
                                     "alltypes-signed", "alltypes-encrypted", "notifications",
                                     "ipv6"])
def test_collectd_capture_golden(capture: str, tmp_path: Path) -> None:
    meta = json.loads((CAPTURES / f"{capture}.json").read_text())
    options: dict[str, Any] = {"collectd_types": [str(DATA / "types.db")],
                               "collectd_use_entry_points": False}
    if meta["auth_file_line"]:
        auth = tmp_path / "auth"
        auth.write_text(meta["auth_file_line"] + "\n")
        options.update(collectd_auth_file=str(auth),
                       collectd_security_level=meta["security_level"])
    cfg = config_mod.make_config(**options)
    text = explain_text(cfg, "collectd", b"", NOW, str(CAPTURES / f"{capture}.pkts"))
    check_golden(f"collectd-{capture}", text)
    assert "converter: " in text


def test_collectd_rates_need_a_second_value_and_the_converter_is_named() -> None:
    cfg = config_mod.make_config(collectd_types=[str(DATA / "types.db")],
                                 collectd_use_entry_points=False)
    text = explain_text(cfg, "collectd", b"", NOW, str(CAPTURES / "plain.pkts"))
    assert "no sample: primed" in text
    assert "converter: bucky.aggregate.collectd_names.CPUConverter (built-in)" in text


def test_nothing_is_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("--explain opened a socket")

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    cfg = config_mod.make_config(
        graphite_destinations=["carbon-a.example:2004:a", "carbon-b.example:2004:b"])
    text = explain_text(cfg, "statsd", b"a:1|c\n", NOW)
    assert "carbon-a.example:2004:a" in text or "carbon-b.example:2004:b" in text


def test_command_line(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "bucky", "--explain",
                          str(DATA / "statsd_config.py")], input=b"a.b:1|c\n",
                         capture_output=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert b"graphite: prod.stats_counts.a.b 1.0 " in run.stdout
    run = subprocess.run([sys.executable, "-m", "bucky", "--explain", "--graphite"],
                         input=b"x.y 1 1700000000\n", capture_output=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert b"graphite: x.y 1 1700000000 -> 127.0.0.1:2003" in run.stdout
    run = subprocess.run([sys.executable, "-m", "bucky", "--explain", "--pkts",
                          str(CAPTURES / "plain.pkts")], capture_output=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert b"datagram 1:" in run.stdout
    run = subprocess.run([sys.executable, "-m", "bucky", "--graphite"], capture_output=True,
                         env=env, timeout=60)
    assert run.returncode == 2 and b"go with --explain" in run.stderr


def test_the_readme_example_is_what_bucky_prints() -> None:
    readme = (ROOT / "README.rst").read_text()
    start = readme.index("    $ printf 'servers.web01.load")
    block = readme[start:readme.index("\n\n", start)].splitlines()
    command, shown = block[:2], [line[4:] for line in block[2:]]
    assert "bucky --explain --graphite" in command[1]
    data = command[0].split("'")[1].encode().decode("unicode_escape").encode()
    text = explain_text(config_mod.make_config(), "graphite", data, NOW)
    assert text.replace("<overrides>", "<defaults>").splitlines() == shown


def test_a_pcap_capture_is_explained_by_destination_port(tmp_path: Path) -> None:
    from pcapbuild import ethernet, ipv4, ipv6, pcap, udp

    from bucky.protocol import collectd
    from bucky.protocol.collectd_records import GAUGE, ValueList
    from bucky.protocol.metricsd import Action, Kind, Record
    from bucky.sender.metricsd import Packer

    value_list = ValueList("web1", "load", "", "load", "", NOW, 10.0, ((GAUGE, 0.5),) * 3)
    packer = Packer("web1")
    packer.add(Record(Kind.GAUGE, Action.UPDATE, "queue", 7))
    frames = [
        ethernet(ipv4(udp(5000, 25826, collectd.encode([value_list])[0])), 0x0800),
        ethernet(ipv6(udp(5001, 8125, b"api.hits:2|c")), 0x86DD),
        ethernet(ipv4(udp(5002, 23632, packer.take() or b"")), 0x0800),
        ethernet(ipv4(udp(5003, 9999, b"elsewhere:1|c")), 0x0800),
        ethernet(ipv4(b"", protocol=6), 0x0800),
    ]
    capture = tmp_path / "lo.pcap"
    capture.write_bytes(pcap(frames, 1))
    cfg = config_mod.make_config(metricsd_enabled=True)
    text = explain_text(cfg, "collectd", b"", NOW, str(capture))
    assert "# capture: pcap, 5 packets; 1 UDP datagrams to other ports; skipped: 1 not-udp" in text
    assert "# 1 datagrams to collectd port 25826" in text
    assert "graphite: web1.load.shortterm 0.5 1700000003 -> 127.0.0.1:2003" in text
    assert "# 1 datagrams to statsd port 8125" in text
    assert "line 1: api.hits:2|c" in text and "stats_counts.api.hits 2" in text
    assert "# 1 datagrams to metricsd port 23632" in text
    assert "graphite: web1.queue.value 7 1700000003" in text.split("to metricsd port")[1]
    assert "elsewhere" not in text
