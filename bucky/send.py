"""bucky-send: send a test metric to Bucky without tools a fresh machine may lack (no `nc`).

    bucky-send statsd 'app.hits:1|c' 'app.load:0.5|g'   # one UDP datagram to 127.0.0.1:8125
    bucky-send carbon 'servers.web1.load 0.5'          # TCP to the carbon input, 127.0.0.1:2013
    bucky-send collectd 'web1/app/gauge-queue 17'      # one collectd datagram to :25826
    printf 'a:1|c\\nb:2|c\\n' | bucky-send statsd -     # lines from stdin

Rules:
- The default host is 127.0.0.1 and the default ports are Bucky's own defaults (the option table
  in bucky.config), so the commands above reach a Bucky started with no config; `--host` and
  `--port` point elsewhere.
- Every line is checked with the daemon's own decoder before anything is sent: a line Bucky
  would reject is refused here with its reason (exit 2), so a typo is not mistaken for a
  delivery problem. A carbon line without a timestamp gets the current time.
- collectd: `[HOST/]PLUGIN[-INSTANCE]/TYPE[-INSTANCE] VALUE[:VALUE...]`, as collectd names values
  (HOST defaults to this machine's name); values are GAUGE unless `--ds-type` says otherwise.
- Exit codes: 0 sent, 1 could not send (resolve, connect), 2 usage or a line Bucky would reject.
- Building payloads (`statsd_payload`, `carbon_payload`, `collectd_payloads`) is separate from
  sending them, so tests check the bytes without a network.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

from bucky.config import OPTION_BY_NAME
from bucky.errors import DecodeError, EncodeError
from bucky.protocol import collectd as collectd_codec
from bucky.protocol import statsd as statsd_codec
from bucky.protocol.collectd_records import DS_TYPE_NAMES, ValueList
from bucky.protocol.graphite import parse_plaintext_line

EXIT_SENT, EXIT_SEND_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_PORTS = {
    "statsd": OPTION_BY_NAME["statsd_port"].default,
    "carbon": OPTION_BY_NAME["carbon_line_port"].default,
    "collectd": OPTION_BY_NAME["collectd_port"].default,
}
DS_TYPES = {name: code for code, name in DS_TYPE_NAMES.items()}
COLLECTD_INTERVAL = 10.0


class BadLine(ValueError):
    """A line Bucky would reject; the message says which and why."""


def statsd_payload(lines: Sequence[str]) -> bytes:
    """One datagram of StatsD lines, each checked as the StatsD input parses it."""
    data = "\n".join(lines).encode("utf-8")
    decoded = statsd_codec.parse(data)
    if decoded.errors:
        error = decoded.errors[0]
        raise BadLine(f"StatsD would reject {error.detail!r}: {error.reason}")
    return data


def carbon_payload(lines: Sequence[str], now: float) -> bytes:
    """Graphite plaintext lines (`path value [timestamp]`), checked as the carbon input parses
    them; a missing timestamp is `now`."""
    out = []
    for line in lines:
        if len(line.split()) == 2:
            line = f"{line} {int(now)}"
        try:
            parse_plaintext_line(line.encode("utf-8"))
        except DecodeError as exc:
            raise BadLine(f"the carbon input would reject {line!r}: {exc.reason}") from None
        out.append(line + "\n")
    return "".join(out).encode("utf-8")


def _split_instance(text: str) -> tuple[str, str]:
    """collectd's `name-instance`: the instance is everything after the first '-'."""
    name, _, instance = text.partition("-")
    return name, instance


def collectd_value_list(spec: str, now: float, host: str, ds_type: int) -> ValueList:
    """`[HOST/]PLUGIN[-PI]/TYPE[-TI] VALUE[:VALUE...]` as one value list."""
    identifier, _, values_text = spec.strip().partition(" ")
    parts = identifier.split("/")
    if len(parts) == 2:
        parts.insert(0, host)
    if len(parts) != 3 or not all(parts) or not values_text.strip():
        raise BadLine(f"expected '[HOST/]PLUGIN[-INSTANCE]/TYPE[-INSTANCE] VALUE': {spec!r}")
    plugin, plugin_instance = _split_instance(parts[1])
    type_, type_instance = _split_instance(parts[2])
    values = []
    for text in values_text.strip().split(":"):
        try:
            values.append((ds_type, float(text) if ds_type == DS_TYPES["gauge"] else int(text)))
        except ValueError:
            raise BadLine(f"not a {DS_TYPE_NAMES[ds_type]} value: {text!r}") from None
    return ValueList(host=parts[0], plugin=plugin, plugin_instance=plugin_instance, type=type_,
                     type_instance=type_instance, time=now, interval=COLLECTD_INTERVAL,
                     values=tuple(values))


def collectd_payloads(specs: Sequence[str], now: float, host: str, ds_type: int) -> list[bytes]:
    """collectd datagrams (as collectd's network plugin packs them) for the value lists."""
    records = [collectd_value_list(spec, now, host, ds_type) for spec in specs]
    try:
        return collectd_codec.encode(records)
    except EncodeError as exc:
        raise BadLine(str(exc)) from None


def send_udp(host: str, port: int, datagrams: Sequence[bytes]) -> None:
    family, _, _, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, address)


def send_tcp(host: str, port: int, data: bytes, timeout: float = 5.0) -> None:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # carbon reads to the end of the stream


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bucky-send",
        description="Send test metrics to Bucky: StatsD lines (UDP), Graphite plaintext lines "
        "to the carbon input (TCP) or collectd value lists (UDP).")
    parser.add_argument("protocol", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("lines", nargs="+", metavar="LINE",
                        help="what to send, one metric each; - reads lines from stdin")
    parser.add_argument("--host", default="127.0.0.1", help="where Bucky listens [127.0.0.1]")
    parser.add_argument("--port", type=int, help="default: Bucky's own for the protocol: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(DEFAULT_PORTS.items())))
    parser.add_argument("--ds-type", choices=sorted(DS_TYPES), default="gauge",
                        help="collectd: the data source type of the values [gauge]")
    parser.add_argument("--collectd-host", default=socket.gethostname(), metavar="NAME",
                        help="collectd: the host name when LINE gives none [this machine's]")
    return parser


def main(argv: list[str] | None = None, stdin: IO[str] | None = None,
         stdout: IO[str] | None = None, clock: Callable[[], float] = time.time) -> int:
    out = stdout if stdout is not None else sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    lines: list[str] = []
    for line in args.lines:
        if line == "-":
            lines.extend(text.rstrip("\r\n") for text in (stdin or sys.stdin) if text.strip())
        else:
            lines.append(line)
    port = args.port if args.port is not None else DEFAULT_PORTS[args.protocol]
    now = clock()
    try:
        if args.protocol == "statsd":
            datagrams = [statsd_payload(lines)]
        elif args.protocol == "collectd":
            datagrams = collectd_payloads(lines, now, args.collectd_host, DS_TYPES[args.ds_type])
        else:
            payload = carbon_payload(lines, now)
    except BadLine as exc:
        print(f"bucky-send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.protocol == "carbon":
            send_tcp(args.host, port, payload)
            what = f"{_count(len(lines), 'line')} over TCP"
        else:
            send_udp(args.host, port, datagrams)
            what = f"{_count(len(lines), 'line')} in {_count(len(datagrams), 'datagram')} over UDP"
    except OSError as exc:
        print(f"bucky-send: cannot send to {args.host} port {port}: {exc}", file=sys.stderr)
        return EXIT_SEND_FAILED
    print(f"bucky-send: {args.protocol}: sent {what} to {args.host} port {port}", file=out)
    return EXIT_SENT


if __name__ == "__main__":
    sys.exit(main())
