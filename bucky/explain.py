"""`bucky --explain [CONFIG]`: what Bucky would emit for some input, and where it would go.

Reads StatsD lines (default), Graphite plaintext lines (`--graphite`) from standard input, or
datagrams from a capture file (`--pkts FILE`: collectd datagrams in `.pkts`, as `bucky-dump
--write` records them, or a pcap file from `tcpdump -w`, whose UDP datagrams to the configured
collectd, StatsD and MetricsD ports are explained),
and runs them through the same code the daemon runs (the inputs' decoders and aggregators, the
processor, the name rules, the placement router), printing for every sample the Graphite line
that would be written and the destination(s) it would go to. No socket is opened; nothing is sent.

StatsD: the lines (one datagram each) make exactly one flush interval, starting at `now`; the
samples are that flush (the reference's own counters included; `processing_time`, measured at
run time, is left out). collectd: each datagram's value lists in order, with the converter that
names them; a COUNTER/DERIVE series gives its first rate at its second value, as in the daemon.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import IO, Any

from bucky.aggregate.collectd_names import DEFAULT_KEY
from bucky.cache import TwoGenerationCache
from bucky.config import Config
from bucky.errors import ConfigError
from bucky.names import NameRules
from bucky.protocol.graphite import clean_path, format_line, parse_plaintext_line
from bucky.sample import GRAPHITE_PATH

Emit = Callable[[str], None]


class _ListSink:
    wants_records = False

    def __init__(self) -> None:
        self.samples: list[tuple] = []
        self.notifications: list[Any] = []

    def extend(self, samples: list[tuple]) -> None:
        self.samples.extend(samples)

    def append(self, sample: tuple) -> None:
        self.samples.append(sample)

    def notify(self, record: Any) -> None:
        self.notifications.append(record)

    def records(self, value_lists: list) -> None:
        pass

    def take(self) -> list[tuple]:
        samples, self.samples = self.samples, []
        return samples


def _placement(cfg: Config) -> tuple[str, Callable[[str], tuple[str, tuple[str, ...]]]]:
    """(description, path -> (path as sent, destination names)) for the Graphite output."""
    if not cfg.graphite_enabled:
        return "off (graphite_enabled = False)", lambda path: (path, ())
    if cfg.debug:
        return "debug: printed on stdout", lambda path: (path, ("stdout",))
    from bucky.daemon.outputs.graphite import graphite_router

    try:
        router = graphite_router(cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    names = tuple(str(d) for d in router.destinations)
    protocol = "pickle" if cfg.graphite_pickle_enabled else "plaintext"
    description = f"{router.describe()}, {protocol}: {', '.join(names)}"

    if router.constant is not None:  # one destination, or broadcast: names go out as they are
        everyone = tuple(names[i] for i in router.constant)
        return description, lambda path: (path, everyone)

    def named(path: str) -> tuple[str, tuple[str, ...]]:
        sent, indexes = router.place(path)
        return sent, tuple(names[i] for i in indexes)

    return description, TwoGenerationCache(named).__getitem__  # once per name, as in the output


class Explainer:
    """Samples -> processor -> name rules -> placement, written as text to `emit`."""

    def __init__(self, cfg: Config, emit: Emit) -> None:
        self.cfg = cfg
        self.emit = emit
        self.rules = NameRules.from_config(cfg)
        self.graphite, self._place = _placement(cfg)
        self.processor = cfg.processor

    def header(self, what: str) -> None:
        emit = self.emit
        emit(f"# config: {self.cfg.source}")
        emit(f"# graphite: {self.graphite}")
        if self.processor is not None:
            name = getattr(self.processor, "__qualname__", repr(self.processor))
            emit(f"# processor: {getattr(self.processor, '__module__', '?')}.{name}")
        others = [o for o, on in (("influxdb", self.cfg.influxdb_enabled),) if on]
        others += [f"custom client {c.__name__}" for c in self.cfg.custom_clients]
        if others:
            emit(f"# also sent to: {', '.join(others)} (not shown)")
        emit(f"# input: {what}")

    def samples(self, samples: Iterable[tuple], indent: str = "  ") -> None:
        emit = self.emit
        for sample in samples:
            host, name, value, timestamp = sample
            shown = "(graphite path)" if host is GRAPHITE_PATH else repr(host)
            emit(f"{indent}sample host={shown} name={name!r} value={value!r} "
                 f"timestamp={timestamp!r}")
            if self.processor is not None:
                try:
                    result = self.processor(host, name, value, timestamp)
                except Exception as exc:
                    verdict = "dropped" if self.cfg.processor_drop_on_error else "kept unchanged"
                    emit(f"{indent}  processor raised {exc.__class__.__name__}: {exc}; "
                         f"sample {verdict}")
                    if self.cfg.processor_drop_on_error:
                        continue
                    result = sample
                if result is None:
                    emit(f"{indent}  processor: dropped")
                    continue
                try:
                    host, name, value, timestamp = result
                except (TypeError, ValueError):
                    emit(f"{indent}  processor returned {result!r}: not 4 items, dropped")
                    continue
                if tuple(result) != tuple(sample):
                    emit(f"{indent}  processor: host={host!r} name={name!r} value={value!r} "
                         f"timestamp={timestamp!r}")
            path = clean_path(self.rules.statname(host, name))
            sent, destinations = self._place(path)
            line = format_line(sent, value, timestamp)
            if line is None:
                emit(f"{indent}  graphite: {sent} -- not sent: value or timestamp unusable")
                continue
            where = ", ".join(destinations) if destinations else "nowhere"
            note = f" (normalized from {path})" if sent != path else ""
            emit(f"{indent}  graphite: {line.rstrip()}{note} -> {where}")


def explain_statsd(cfg: Config, data: bytes, now: float, emit: Emit) -> None:
    from bucky.aggregate.statsd import StatsdAggregator, StatsdSettings

    explainer = Explainer(cfg, emit)
    bad: list[tuple[str, str]] = []
    agg = StatsdAggregator(StatsdSettings.from_config(cfg),
                           lambda reason, line, _now: bad.append((reason, line)))
    agg.tick(now)  # starts the flush grid at `now`
    lines = [line for line in data.splitlines() if line.strip()]
    explainer.header(f"StatsD, {len(lines)} lines, one datagram each; one flush interval of "
                     f"{cfg.statsd_flush_time:g} s containing {now:.3f}")
    for number, line in enumerate(lines, 1):
        before = len(bad)
        agg.ingest(line, now)
        emit(f"line {number}: {line.decode('utf-8', 'backslashreplace')}")
        for reason, text in bad[before:]:
            emit(f"  bad line ({reason}): {text!r}")
    samples = agg.tick(agg.next_flush)
    emit(f"flush at {agg.last_timestamp}: {len(samples)} samples "
         "(and stats.statsd.processing_time, measured at run time)")
    explainer.samples(samples)


def explain_graphite(cfg: Config, data: bytes, now: float, emit: Emit) -> None:
    from bucky.errors import DecodeError
    from bucky.inputs.carbon import CarbonInput

    explainer = Explainer(cfg, emit)
    sink = _ListSink()
    carbon = CarbonInput(cfg, sink)
    lines = [line for line in data.splitlines() if line.strip()]
    explainer.header(f"Graphite plaintext (the carbon input), {len(lines)} lines")
    for number, line in enumerate(lines, 1):
        emit(f"line {number}: {line.decode('utf-8', 'backslashreplace')}")
        try:
            parse_plaintext_line(line)
        except DecodeError as exc:
            emit(f"  bad line ({exc.reason})")
            continue
        carbon.handle_lines([line], now)
        samples = sink.take()
        if not samples:
            emit("  dropped: NaN value (carbon drops it too)")
        explainer.samples(samples)


def _identifier(record: Any) -> str:
    """collectd's own spelling: host/plugin[-instance]/type[-instance]."""
    plugin = record.plugin + (f"-{record.plugin_instance}" if record.plugin_instance else "")
    kind = record.type + (f"-{record.type_instance}" if record.type_instance else "")
    return f"{record.host}/{plugin}/{kind}"


def _converter(table: Any, plugin: str) -> str:
    """`name (where it came from)` of the converter that names `plugin`'s values."""
    key = plugin if plugin in table else DEFAULT_KEY
    converter = table.get(plugin)
    name = getattr(converter, "__qualname__", None) or type(converter).__qualname__
    module = getattr(converter, "__module__", None) or type(converter).__module__
    return f"{module}.{name} ({table.sources.get(key, '?')}{', default' if key != plugin else ''})"


def explain_collectd(cfg: Config, datagrams: Iterable[bytes], now: float, emit: Emit) -> None:
    from bucky.inputs.collectd import CollectdInput
    from bucky.protocol.collectd_records import SEVERITY_NAMES, Notification, ValueList

    explainer = Explainer(cfg, emit)
    sink = _ListSink()
    collectd = CollectdInput(cfg, sink)
    converters = collectd.pipeline.converters
    explainer.header("collectd datagrams")
    for number, datagram in enumerate(datagrams, 1):
        decoded = collectd.decode(datagram)
        records, errors = decoded.records, decoded.errors
        emit(f"datagram {number}: {len(datagram)} bytes, {len(records)} records")
        for error in errors:
            emit(f"  {getattr(error, 'reason', 'error')}: {error}")
        for record in records:
            if type(record) is Notification:
                severity = SEVERITY_NAMES.get(record.severity, str(record.severity))
                emit(f"  notification {_identifier(record)} {severity}: {record.message!r} "
                     "(to custom clients only; never a Graphite point)")
                continue
            if type(record) is not ValueList:
                continue
            values = ", ".join(f"{v!r}" for _, v in record.values)
            emit(f"  value list {_identifier(record)} time {record.time!r}: {values}")
            emit(f"    converter: {_converter(converters, record.plugin)}")
            before = dict(collectd.counters)
            samples = collectd.pipeline.process([record], now)
            after = collectd.counters
            changes = sorted(k for k in after if after[k] != before.get(k, 0)
                             and k.startswith(("rejected.", "dropped.", "primed")))
            if not samples:
                emit("    no sample" + (f": {', '.join(changes)}" if changes else ""))
            explainer.samples(samples, indent="    ")


def explain_metricsd(cfg: Config, datagrams: Iterable[tuple[bytes, str]], now: float,
                     emit: Emit) -> None:
    """MetricsD datagrams (with their senders) through the input, then its final flush."""
    from bucky.inputs.metricsd import MetricsdInput

    explainer = Explainer(cfg, emit)
    sink = _ListSink()
    metricsd = MetricsdInput(cfg, sink)
    explainer.header("MetricsD datagrams; their metrics as the final flush emits them")
    for number, (datagram, sender) in enumerate(datagrams, 1):
        before = dict(metricsd.counters)
        metricsd.handle(datagram, sender, now)
        bad = sorted(k for k, v in metricsd.counters.items()
                     if k.startswith("bad_datagrams.") and v != before.get(k, 0))
        emit(f"datagram {number}: {len(datagram)} bytes" + (f"; {', '.join(bad)}" if bad else ""))
    metricsd.close(now)
    samples = sink.take()
    emit(f"flush at {now:.3f}: {len(samples)} samples")
    explainer.samples(samples)


def explain_capture(cfg: Config, path: str, now: float, emit: Emit) -> None:
    """`--pkts FILE`: a `.pkts` capture holds collectd datagrams; from a pcap capture (tcpdump
    -w) the UDP datagrams to the configured collectd, StatsD and MetricsD ports are explained,
    each protocol in turn, and the others are counted."""
    from bucky.protocol.capture import Pcap, is_pcap, split_pkts

    with open(path, "rb") as handle:
        data = handle.read()
    if not is_pcap(data):
        explain_collectd(cfg, list(split_pkts(data)), now, emit)
        return
    capture = Pcap(data)
    by_port: dict[int, list[tuple[bytes, Any]]] = {}
    for packet in capture.udp():
        by_port.setdefault(packet.destination[1], []).append((packet.payload, packet.source))
    kinds = [("collectd", cfg.collectd_enabled, cfg.collectd_port),
             ("statsd", cfg.statsd_enabled, cfg.statsd_port),
             ("metricsd", cfg.metricsd_enabled, cfg.metricsd_port)]
    wanted = {port for _, enabled, port in kinds if enabled}
    others = sum(len(found) for port, found in by_port.items() if port not in wanted)
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(capture.skipped.items()))
    emit(f"# capture: pcap, {capture.packets} packets; {others} UDP datagrams to other ports"
         + (f"; skipped: {skipped}" if skipped else ""))
    for kind, enabled, port in kinds:
        found = by_port.get(port, []) if enabled else []
        if not found:
            continue
        emit(f"# {len(found)} datagrams to {kind} port {port}")
        if kind == "collectd":
            explain_collectd(cfg, [payload for payload, _ in found], now, emit)
        elif kind == "statsd":
            explain_statsd(cfg, b"\n".join(payload for payload, _ in found), now, emit)
        else:
            explain_metricsd(cfg, found, now, emit)


def run(cfg: Config, mode: str, stdin: IO[bytes], out: IO[str], now: float,
        pkts: str | None = None) -> int:
    """The --explain command; returns the exit status."""
    def emit(text: str) -> None:
        out.write(text + "\n")

    if mode == "collectd":
        assert pkts is not None
        explain_capture(cfg, pkts, now, emit)
    elif mode == "graphite":
        explain_graphite(cfg, stdin.read(), now, emit)
    else:
        explain_statsd(cfg, stdin.read(), now, emit)
    return 0


def explain_text(cfg: Config, mode: str, data: bytes, now: float, pkts: str | None = None) -> str:
    """The --explain output as a string (tests, golden files)."""
    out = io.StringIO()
    run(cfg, mode, io.BytesIO(data), out, now, pkts)
    return out.getvalue()
