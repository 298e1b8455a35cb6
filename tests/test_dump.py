"""Tests of `bucky-dump` (bucky.dump), run as `python -m bucky.dump` subprocesses.

Captures and their expected records are in tests/data/dump/ (copied from the shared collectd
vectors); the live cases send to a free port on 127.0.0.1 and stop with --count or --timeout.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buckyproc import free_port  # tests/ helper

from bucky import dump
from bucky.protocol import collectd as codec
from bucky.protocol.collectd_records import GAUGE, ValueList

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "dump"
TIMEOUT = 60  # seconds any bucky-dump run may take


def run_dump(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bucky.dump", *args],
        input=stdin if stdin is not None else b"",
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def _expected(name: str) -> dict:
    return json.loads((DATA / f"{name}.expected.json").read_text())


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_text_output_of_a_capture():
    result = run_dump("--pkts", str(DATA / "notifications.pkts"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "[1700000401] vec-web-01.example.org/vectest/n/temperature/cpu0 [failure] "
        "CPU temperature above threshold: 97.5 C"
    )
    assert "[1700000400] vec-web-01.example.org/vectest/n/gauge/before [(1, 7.5)]" in lines
    assert (
        "[1700000404] vec-db-02/vectest/gauge/utf8 [warning] Température élevée ✓ (UTF-8)" in lines
    )
    assert len(lines) == 7


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("notifications", []),
        ("alltypes", []),
        ("alltypes-signed", ["--security-level", "sign", "--auth-file"]),
        ("alltypes-encrypted", ["--security-level", "encrypt", "--auth-file"]),
    ],
)
def test_json_output_matches_the_capture_sidecar(name, options):
    if options:
        options = [*options, str(DATA / f"{name}.auth")]
    result = run_dump("--json", "--pkts", str(DATA / f"{name}.pkts"), *options)
    assert result.returncode == 0, result.stderr
    got = _json_lines(result.stdout)
    expected = _expected(name)["decoded"]
    assert len(got) == len(expected)
    for line, want in zip(got, expected, strict=True):
        assert {key: line[key] for key in want} == want  # incl. "NaN", 2**64-1, -0.0, packet
        assert line["username"] == (_expected(name)["username"] or "")


def test_rejected_datagrams_are_printed_with_their_reasons():
    text = run_dump("--pkts", str(DATA / "alltypes.pkts"), "--security-level", "sign",
                    "--auth-file", str(DATA / "alltypes-signed.auth"))  # fmt: skip
    assert text.returncode == 0
    assert text.stdout.splitlines() == [
        f"rejected packet {i}: unsigned-data-ignored: SecurityLevel Sign" for i in range(5)
    ]
    as_json = run_dump("--json", "--count", "1", "--pkts", str(DATA / "alltypes-signed.pkts"),
                       "--auth-file", str(DATA / "alltypes-encrypted.auth"))  # fmt: skip
    lines = _json_lines(as_json.stdout)
    assert lines == [
        {"kind": "error", "packet": 0, "reason": "unknown-user", "detail": lines[0]["detail"]}
    ]


def test_a_damaged_datagram_keeps_its_good_records_and_the_dump_goes_on(tmp_path):
    good = codec.encode([ValueList("h", "p", "", "gauge", "", 5.0, 1.0, ((GAUGE, 1.5),))])[0]
    capture = tmp_path / "damaged.pkts"
    damaged = good + b"\x00\x06\x00\xff"  # a values part longer than what is left
    capture.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in (damaged, b"", good)))
    result = run_dump("--pkts", str(capture))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == lines[-1] == "[5] h/p/gauge [(1, 1.5)]"
    assert lines[1].startswith("rejected packet 0: ")
    assert len(lines) == 3


def test_capture_from_stdin_and_count():
    capture = (DATA / "notifications.pkts").read_bytes()
    result = run_dump("--pkts", "-", "--count", "2", stdin=capture)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 2  # what came before the damage


def test_a_truncated_capture_is_an_input_error(tmp_path):
    capture = tmp_path / "cut.pkts"
    capture.write_bytes((DATA / "notifications.pkts").read_bytes()[:-3])
    result = run_dump("--pkts", str(capture))
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 6  # what came before is still printed
    assert "truncated datagram" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-option"],
        ["--lines", "x"],  # --lines is for --statsd
        ["--pkts", "a", "--lines", "b", "--statsd"],
        ["--security-level", "sign"],  # without --auth-file
        ["--security-level", "paranoid", "--auth-file", "x"],
        ["--count", "0"],
        ["--timeout", "-1"],
        ["--pkts", "x", "--timeout", "1"],
        ["--statsd", "--auth-file", "x"],
        ["--port", "70000"],
    ],
)
def test_usage_errors_exit_2(args):
    assert dump.main(args, stdout=io.StringIO()) == 2


def test_help_exits_0(capsys):
    assert dump.main(["--help"]) == 0
    assert "bucky-dump" in capsys.readouterr().out


def test_a_missing_file_exits_1(tmp_path):
    result = run_dump("--pkts", str(tmp_path / "missing.pkts"))
    assert result.returncode == 1
    assert "missing.pkts" in result.stderr


def _start_live(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bucky.dump", "--listen", "127.0.0.1", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ready once it says so on stderr (after binding): no datagram is sent into the void.
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "listening on" in line, line
    return process


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return process.returncode, out


def test_live_collectd_datagrams_until_count():
    port = free_port()
    process = _start_live("--port", str(port), "--count", "2", "--json")
    records = [ValueList("web", "load", "", "load", "", 7.0, 10.0, ((GAUGE, 0.5),) * 3)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(codec.encode(records)[0], ("127.0.0.1", port))
        sender.sendto(b"\x00\x00\x00\x02", ("127.0.0.1", port))  # a part shorter than its header
        code, out = _finish(process)
        sender_port = sender.getsockname()[1]
    assert code == 0
    first, second = _json_lines(out)
    assert first["kind"] == "values" and first["values"] == [0.5, 0.5, 0.5]
    assert first["from"] == f"127.0.0.1:{sender_port}" and first["packet"] == 0
    assert second["kind"] == "error" and second["packet"] == 1 and second["reason"]


def test_live_stops_at_the_timeout():
    started = time.monotonic()
    process = _start_live("--port", "0", "--timeout", "0.3")
    code, out = _finish(process)
    assert code == 0 and out == ""
    assert time.monotonic() - started < TIMEOUT


def test_live_bind_failure_exits_1():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        result = run_dump("--listen", "127.0.0.1", "--port", str(taken.getsockname()[1]),
                          "--timeout", "0.1")  # fmt: skip
    assert result.returncode == 1
    assert "Address already in use" in result.stderr


def test_read_pkts_round_trip():
    datagrams = [b"", b"a", b"\x00" * 70000]
    stream = io.BytesIO(b"".join(struct.pack(">I", len(d)) + d for d in datagrams))
    assert list(dump.read_pkts(stream)) == datagrams


# -- StatsD -----------------------------------------------------------------------------------

STATSD_TEXT = [
    "counter requests 1.0",
    "counter requests 3.0 @0.5 #canary=true,env=prod",
    "timer latency 12.5",
    "gauge_delta temperature -3.0",  # a signed gauge value is a delta, as in statsd/statsd
    "gauge_delta queue 2.0",
    "set users alice",
    "rejected line 7: no-value: not a metric",
    "rejected line 8: bad-type: bad.type:1|zz",
    "counter multi 1.0",
    "counter multi 2.0",
    "ignored line 11: 0 events, 1 service checks",
]


def test_statsd_lines_from_a_file():
    result = run_dump("--statsd", "--lines", str(DATA / "statsd-lines.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == STATSD_TEXT


def test_statsd_lines_from_stdin_as_json():
    result = run_dump(
        "--statsd", "--json", "--lines", "-", stdin=b"a.b:2|c|@0.1|#k:v\r\nno value\n\xff:1|c\n"
    )
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [
        {
            "kind": "statsd",
            "lineno": 1,
            "type": "counter",
            "name": "a.b",
            "value": 2.0,
            "rate": 0.1,
            "tags": [["k", "v"]],
            "timestamp": None,
        },
        {"kind": "error", "lineno": 2, "reason": "no-value", "line": "no value"},
        {"kind": "error", "lineno": 3, "reason": "bad-name", "line": "\\xff:1|c"},
    ]


def test_statsd_datagrams_from_a_capture(tmp_path):
    capture = tmp_path / "statsd.pkts"
    datagrams = [b"a:1|c\nb:2|g", b"oops"]
    capture.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in datagrams))
    result = run_dump("--statsd", "--pkts", str(capture))
    assert result.stdout.splitlines() == [
        "counter a 1.0",
        "gauge b 2.0",
        "rejected packet 1: no-value: oops",
    ]


def test_live_statsd_until_count():
    port = free_port()
    process = _start_live("--statsd", "--port", str(port), "--count", "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"hits:1|c\nbad", ("127.0.0.1", port))
        code, out = _finish(process)
        sender_port = sender.getsockname()[1]
    assert code == 0
    assert out.splitlines() == [
        "counter hits 1.0",
        f"rejected packet 0, from 127.0.0.1:{sender_port}: no-value: bad",
    ]


# -- recording (--write) and pcap captures --------------------------------------------------


def test_write_records_what_arrives_and_pkts_reads_it_back(tmp_path):
    port = free_port()
    recorded = tmp_path / "live.pkts"
    process = _start_live("--statsd", "--port", str(port), "--count", "2",
                          "--write", str(recorded))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"hits:1|c\nload:2|g", ("127.0.0.1", port))
        sender.sendto(b"bad", ("127.0.0.1", port))
        code, _ = _finish(process)
    assert code == 0
    assert list(dump.read_pkts(io.BytesIO(recorded.read_bytes()))) == [
        b"hits:1|c\nload:2|g", b"bad"]
    replay = run_dump("--statsd", "--pkts", str(recorded))
    assert replay.stdout.splitlines() == [
        "counter hits 1.0", "gauge load 2.0", "rejected packet 1: no-value: bad"]


def test_a_pcap_capture_is_read_by_destination_port(tmp_path):
    from pcapbuild import ethernet, ipv4, ipv6, pcap, udp

    records = [ValueList("web", "load", "", "load", "", 7.0, 10.0, ((GAUGE, 0.5),) * 3)]
    collectd = codec.encode(records)[0]
    frames = [
        ethernet(ipv4(udp(5000, 8125, b"hits:1|c")), 0x0800),
        ethernet(ipv6(udp(5001, 25826, collectd)), 0x86DD),
        ethernet(ipv4(udp(5002, 9999, b"other:1|c")), 0x0800),
    ]
    capture = tmp_path / "lo.pcap"
    capture.write_bytes(pcap(frames, 1, ">"))
    statsd = run_dump("--statsd", "--pkts", str(capture), "--json")
    assert [(line["name"], line["from"]) for line in _json_lines(statsd.stdout)] == [
        ("hits", "127.0.0.1:5000")]
    collectd_out = run_dump("--pkts", str(capture))
    assert collectd_out.stdout.splitlines() == [
        "[7] web/load/load [(1, 0.5), (1, 0.5), (1, 0.5)]"]
    assert statsd.stderr == ("bucky-dump: pcap (Ethernet): 3 packets, 1 UDP datagrams to port "
                             "8125, 2 to other ports\n")
    other = run_dump("--statsd", "--pkts", str(capture), "--port", "9999")
    assert other.stdout.splitlines() == ["counter other 1.0"]
    every = run_dump("--statsd", "--pkts", str(capture), "--port", "0")
    assert every.stdout.count("\n") == 3  # the collectd datagram is a rejected line too
    converted = tmp_path / "converted.pkts"
    run_dump("--statsd", "--pkts", str(capture), "--write", str(converted))
    assert converted.read_bytes() == struct.pack(">I", 8) + b"hits:1|c"
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(pcap(frames, 1)[:-5])
    result = run_dump("--statsd", "--pkts", str(broken), "--port", "0")
    assert result.returncode == 1 and "truncated packet" in result.stderr
    assert result.stdout.count("\n") == 2  # what came before the damage
