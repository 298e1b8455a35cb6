"""bucky-dump: print what collectd or StatsD senders send, as text or JSON lines.

    bucky-dump --port 25826                        # live collectd datagrams on 0.0.0.0:25826
    bucky-dump --listen 239.192.74.66 --interface eth0
    bucky-dump --pkts capture.pkts --json          # a capture: <u32 BE length><datagram>...
    bucky-dump --port 25826 --write capture.pkts   # record for `bucky --explain --pkts`
    bucky-dump --statsd --pkts lo.pcap             # tcpdump -w: the datagrams to port 8125
    bucky-dump --statsd --port 8125 --count 10
    printf 'a:1|c\\n' | bucky-dump --statsd --lines -

Rules:
- Every record is printed, and so is every rejected part or line with its reason; a rejected
  datagram never stops the dump. Text lines read like the classic collectd reader's
  (`[time] host/plugin[-pi]/type[-ti] [(ds_type, value), ...]`); `--json` prints one object per
  line with a "kind" of "values", "notification", "statsd", "error" or "ignored" (DogStatsD
  events and service checks, which Bucky does not relay).
- Captures (`--pkts`) are `.pkts` files (`--write` records them) or pcap files from
  `tcpdump -w` (bucky.protocol.capture), of which only the UDP datagrams to `--port` (default:
  the protocol's port; 0: any) are read.
- Live input stops after `--count` datagrams or `--timeout` seconds (or Ctrl-C).
- Exit codes: 0 done, 1 input could not be opened or read (bind, file), 2 usage.
- Decoding is the daemon's own (bucky.protocol.*), so what the dump accepts the daemon accepts.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator
from typing import IO, Any

from bucky.protocol import statsd
from bucky.protocol.capture import (
    LINK_TYPES,
    CaptureError,
    Pcap,
    is_pcap,
    pkts_record,
    split_pkts,
)
from bucky.protocol.statsd import StatsdMetric
from bucky.reader import DEFAULT_PORT, Decoder, Notification, Reader, Values, interpret_record

STATSD_DEFAULT_PORT = 8125


def read_pkts(stream: IO[bytes]) -> Iterator[bytes]:
    """Datagrams of a `.pkts` capture: each a 4-byte big-endian length, then that many bytes."""
    return split_pkts(stream.read())


def read_capture(stream: IO[bytes], ports: Collection[int] | None,
                 report: Callable[[str], None] | None = None
                 ) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(datagram, where) of a `.pkts` or pcap capture; from a pcap only the UDP datagrams sent to
    one of `ports` (None: every port), and at the end a summary line to `report` (what was read
    and skipped: an empty dump with a wrong --port then says why)."""
    data = stream.read()
    if not is_pcap(data):
        for index, datagram in enumerate(split_pkts(data)):
            yield datagram, {"packet": index}
        return
    capture = Pcap(data)
    index = others = 0
    for packet in capture.udp():
        if ports is None or packet.destination[1] in ports:
            yield packet.payload, {"packet": index, "from": packet.sender}
            index += 1
        else:
            others += 1
    if report is not None:
        wanted = "any port" if ports is None else "port " + ", ".join(map(str, sorted(ports)))
        skipped = "".join(f", {n} {reason}" for reason, n in sorted(capture.skipped.items()))
        report(f"pcap ({LINK_TYPES[capture.link_type]}): {capture.packets} packets, {index} UDP "
               f"datagrams to {wanted}, {others} to other ports{skipped}")


class Recorder:
    """`--write FILE`: every datagram the dump reads, appended to a `.pkts` capture (flushed at
    once, so the file is whole when the dump is stopped)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())

    def write(self, datagram: bytes) -> None:
        self._file.write(pkts_record(datagram))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# -- output -----------------------------------------------------------------------------------


def _json_number(value: Any) -> Any:
    """JSON has no NaN or infinity; spell them as strings, as the shared capture vectors do."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _line_text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace")


class Printer:
    """Formats records and rejections as text or JSON lines on one stream."""

    def __init__(self, stream: IO[str], as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json

    def _emit(self, text: str, obj: dict[str, Any]) -> None:
        if self.as_json:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
        self.stream.write(text + "\n")

    def collectd(self, item: Values | Notification, where: dict[str, Any]) -> None:
        common = {
            "host": item.host,
            "plugin": item.plugin,
            "plugin_instance": item.plugin_instance,
            "type": item.type,
            "type_instance": item.type_instance,
            "time": item.time,
        }
        security = "" if item.security == "none" else f" ({item.security}: {item.username})"
        if isinstance(item, Values):
            obj = {"kind": "values", **where, **common, "interval": item.interval}
            obj["dstypes"] = [name.upper() for name in item.dstype_names]  # as collectd spells them
            obj["values"] = [_json_number(value) for value in item.values]
        else:
            obj = {"kind": "notification", **where, **common}
            obj["severity"] = item.severity_name
            obj["message"] = item.message
        obj["security"] = item.security
        obj["username"] = item.username
        self._emit(f"{item}{security}", obj)

    def collectd_error(self, error: Exception, where: dict[str, Any]) -> None:
        reason = getattr(error, "reason", type(error).__name__)
        detail = getattr(error, "detail", str(error))
        text = f"rejected {_where_text(where)}: {reason}" + (f": {detail}" if detail else "")
        self._emit(text, {"kind": "error", **where, "reason": reason, "detail": detail})

    def statsd(self, metric: StatsdMetric, where: dict[str, Any]) -> None:
        kind = metric.kind.name.lower()  # counter, gauge, gauge_delta, timer, set, ...
        text = f"{kind} {metric.name} {metric.value}"
        if metric.rate != 1.0:
            text += f" @{metric.rate}"
        if metric.tags:
            text += " #" + ",".join(f"{key}={value}" for key, value in metric.tags)
        if metric.timestamp is not None:
            text += f" T{metric.timestamp}"
        obj = {"kind": "statsd", **where, "type": kind, "name": metric.name}
        obj.update(value=metric.value, rate=metric.rate, tags=[list(tag) for tag in metric.tags])
        obj["timestamp"] = metric.timestamp
        self._emit(text, obj)

    def statsd_error(self, reason: str, line: bytes, where: dict[str, Any]) -> None:
        shown = _line_text(line)
        self._emit(
            f"rejected {_where_text(where)}: {reason}: {shown}",
            {"kind": "error", **where, "reason": reason, "line": shown},
        )

    def statsd_ignored(self, events: int, service_checks: int, where: dict[str, Any]) -> None:
        """DogStatsD events and service checks are recognised but not relayed."""
        text = f"ignored {_where_text(where)}: {events} events, {service_checks} service checks"
        obj = {"kind": "ignored", **where, "events": events, "service_checks": service_checks}
        self._emit(text, obj)


_WHERE_LABELS = {"packet": "packet", "lineno": "line", "from": "from"}


def _where_text(where: dict[str, Any]) -> str:
    """`packet 3, from 127.0.0.1:5000` or `line 7`: where a rejected piece came from."""
    parts = [f"{_WHERE_LABELS.get(key, key)} {value}" for key, value in where.items()]
    return ", ".join(parts) if parts else "input"


# -- decoding one datagram --------------------------------------------------------------------


class Dumper:
    """Decodes datagrams (collectd or StatsD) and hands the results to a Printer."""

    def __init__(self, printer: Printer, decoder: Decoder | None,
                 recorder: Recorder | None = None) -> None:
        self.printer = printer
        self.decoder = decoder  # None: StatsD
        self.recorder = recorder

    def datagram(self, data: bytes, where: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder.write(data)
        if self.decoder is None:
            self._statsd(data, where)
        else:
            decoded = self.decoder.decode(data)
            for record in decoded.records:
                self.printer.collectd(interpret_record(record), where)
            for error in decoded.errors:
                self.printer.collectd_error(error, where)

    def _statsd(self, data: bytes, where: dict[str, Any]) -> None:
        decoded = statsd.parse(data)
        events = service_checks = 0
        for record in decoded.records:
            if type(record) is StatsdMetric:
                self.printer.statsd(record, where)
            elif record.kind == "event":
                events += 1
            else:
                service_checks += 1
        for error in decoded.errors:
            line = error.detail.encode("utf-8", "surrogateescape")
            self.printer.statsd_error(error.reason, line, where)
        if events or service_checks:
            self.printer.statsd_ignored(events, service_checks, where)


# -- command line -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bucky-dump",
        description="Print the records of collectd (default) or StatsD datagrams arriving on a "
        "UDP port or stored in a capture file, with the reasons for anything rejected.",
    )
    parser.add_argument("--statsd", action="store_true", help="StatsD lines instead of collectd")
    source = parser.add_argument_group("input (default: listen on UDP)")
    source.add_argument(
        "--listen",
        metavar="ADDR",
        default="0.0.0.0",
        help="address to listen on; a multicast group is joined (default 0.0.0.0)",
    )
    source.add_argument("--interface", metavar="NAME", help="interface for a multicast group")
    source.add_argument(
        "--port",
        type=int,
        help=f"UDP port (default {DEFAULT_PORT}, with --statsd {STATSD_DEFAULT_PORT}; 0: any); "
        "in a pcap capture, the destination port of the datagrams to read",
    )
    source.add_argument(
        "--pkts",
        metavar="FILE",
        help="read a capture file: pcap (tcpdump -w) or .pkts (--write); - for stdin",
    )
    source.add_argument(
        "--lines",
        metavar="FILE",
        help="with --statsd: read text, each line as its own datagram; - for stdin",
    )
    limits = parser.add_argument_group("stopping")
    limits.add_argument(
        "--count", type=_positive_int, help="stop after N datagrams (lines with --lines)"
    )
    limits.add_argument("--timeout", type=_positive_float, help="stop after S seconds (live)")
    security = parser.add_argument_group("collectd security")
    security.add_argument(
        "--security-level",
        default="none",
        type=str.lower,
        choices=["none", "sign", "encrypt", "0", "1", "2"],
        help="accept only signed (sign) or encrypted (encrypt) data (default none)",
    )
    security.add_argument("--auth-file", metavar="FILE", help="collectd AuthFile: user: password")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--write", metavar="FILE",
                        help="also record every datagram read into FILE (.pkts, which "
                        "--pkts and bucky --explain --pkts read)")
    return parser


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.pkts is not None and args.lines is not None:
        parser.error("--pkts and --lines are alternatives")
    if args.lines is not None and not args.statsd:
        parser.error("--lines is for --statsd; collectd captures are read with --pkts")
    if args.timeout is not None and (args.pkts is not None or args.lines is not None):
        parser.error("--timeout is for live input")
    if args.statsd and (args.auth_file or args.security_level not in ("none", "0")):
        parser.error("--auth-file and --security-level are for collectd")
    if args.security_level not in ("none", "0") and not args.auth_file:
        parser.error("--security-level sign/encrypt needs --auth-file")
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port must be within 0..65535, not {args.port}")


def _open_binary(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def _dump_pkts(dumper: Dumper, path: str, count: int | None, port: int, err: IO[str]) -> None:
    stream = _open_binary(path)

    def report(line: str) -> None:
        print(f"bucky-dump: {line}", file=err)

    try:
        captured = read_capture(stream, (port,) if port else None, report)
        for index, (datagram, where) in enumerate(captured):
            if count is not None and index >= count:
                return
            dumper.datagram(datagram, where)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _dump_lines(dumper: Dumper, path: str, count: int | None) -> None:
    stream = _open_binary(path)
    try:
        for index, line in enumerate(stream):
            if count is not None and index >= count:
                return
            dumper.datagram(line.rstrip(b"\r\n"), {"lineno": index + 1})
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _dump_live(dumper: Dumper, reader: Reader, args: argparse.Namespace, err: IO[str]) -> None:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    where = f"{reader.host} port {reader.port}"
    print(f"bucky-dump: listening on {where}", file=err, flush=True)
    received = 0
    while args.count is None or received < args.count:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        try:
            datagram = reader.receive(timeout=remaining)
        except TimeoutError:
            return
        sender = reader.last_address
        dumper.datagram(datagram, {"packet": received, "from": f"{sender[0]}:{sender[1]}"})
        dumper.printer.stream.flush()  # someone is watching: show each datagram at once
        received += 1


def main(argv: list[str] | None = None, stdout: IO[str] | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_usage(parser, args)
    except SystemExit as exit_:  # argparse: 0 for --help, 2 for usage errors
        return exit_.code if isinstance(exit_.code, int) else 2
    if stdout is None and isinstance(out, io.TextIOWrapper):
        # Names and messages are UTF-8 from anywhere: never die on a terminal that is not.
        out.reconfigure(errors="backslashreplace")
    printer = Printer(out, args.json)
    reader: Reader | None = None
    recorder: Recorder | None = None
    try:
        decoder = None if args.statsd else Decoder(args.security_level, args.auth_file)
        recorder = Recorder(args.write) if args.write is not None else None
        dumper = Dumper(printer, decoder, recorder)
        if args.pkts is not None:
            _dump_pkts(dumper, args.pkts, args.count, _port(args), err)
        elif args.lines is not None:
            _dump_lines(dumper, args.lines, args.count)
        else:
            # The Reader's socket only: decoding stays with the dumper (collectd or StatsD).
            reader = Reader(args.listen, _port(args), interface=args.interface)
            _dump_live(dumper, reader, args, err)
        out.flush()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        if stdout is None:
            _quiet_broken_pipe()
        return 0
    except (OSError, CaptureError, ValueError) as error:
        print(f"bucky-dump: {error}", file=err)
        return 1
    finally:
        if reader is not None:
            reader.close()
        if recorder is not None:
            recorder.close()
    return 0


def _port(args: argparse.Namespace) -> int:
    if args.port is not None:
        return args.port
    return STATSD_DEFAULT_PORT if args.statsd else DEFAULT_PORT


def _quiet_broken_pipe() -> None:
    """`bucky-dump ... | head`: stop quietly; Python would complain when flushing at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
