"""The supervisor: binds sockets, owns the channels, starts and watches the children.

Modelled on gunicorn's arbiter: signal handlers only record the signal and wake the loop; the loop
acts (SIGTERM/SIGINT: ordered stop, SIGQUIT: stop at once, SIGHUP: reload). Children are watched
through `Process.sentinel` and their control pipes, never SIGCHLD, and the loop never blocks
waiting for one: a child's boot ("ready", "error", death, or BOOT_TIMEOUT) is an event like a
signal, so a SIGTERM during a slow boot is acted on at once.

What runs comes from a `DaemonPlan` (bucky.daemon.preflight): checked before anything is bound, so
a config that a child would refuse is refused here. A child that dies unexpectedly is restarted
after a `Backoff` delay, reusing its sockets and channels (its last words, a ("crashed", why)
on its control pipe, name the cause). Essential children (inputs, processor, outputs) that
cannot boot at start-up, or die too often, halt the daemon with a non-zero exit so the init
system takes over; an auxiliary child (the status server) is given up on instead (one ERROR
line, the `given_up` self-metric, tried again after AUX_RETRY_DELAY): it never stops relaying,
and its optional default port being taken is a warning, not an error. Shutdown is
ordered: inputs, then the processor, then the outputs, each given `process_join_timeout` before
being killed (a child still booting holds no data and is killed at once).

Reload (SIGHUP): the new config is first evaluated and preflighted in a short-lived child
(`_check_config`, RELOAD_CHECK_TIMEOUT), while the loop goes on: a config file is Python, and
whatever it raises or however long it sleeps only ends that child (a SIGTERM meanwhile is acted on
at once). Once it passed, the supervisor loads it (under the same time limit, catching anything),
builds its plan and binds its new sockets before the running children are touched; any failure is
one log line and the running config stays. Then:
- outputs whose options and inputs are unchanged keep running (with what they buffer); the old
  inputs hand their state over and stop, the old processor drains and stops, the new processor
  and inputs start;
- otherwise the new outputs (and processor) start first, next to the old ones; once they are up
  the old inputs hand their state over and stop and the new inputs start on the same sockets
  (the kernel buffers what arrives meanwhile); once those are up the old processor and outputs
  drain and stop. A new output or processor that cannot boot cancels the reload.
sd_notify (bucky.daemon.notify) reports READY=1, RELOADING=1, STOPPING=1 and STATUS= lines.
The supervisor never touches a sample; its own counters (restarts, given_up, reloads) go to the
outputs as self-metrics over a channel of its own into each.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import Counter, deque
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import bucky
from bucky import config as config_mod
from bucky.addresses import format_address
from bucky.daemon.backoff import Backoff
from bucky.daemon.channels import Channel, ChannelWriter
from bucky.daemon.children import ChildSpec, child_main
from bucky.daemon.notify import Notifier
from bucky.daemon.plan import (
    STAGE_INPUT,
    STAGE_OUTPUT,
    STAGE_PROCESSOR,
    DaemonPlan,
    handover_state,
)
from bucky.daemon.preflight import preflight
from bucky.daemon.selfmetrics import SelfMetrics
from bucky.daemon.sockets import BindError, bind_tcp, bind_udp_workers, report_receive_buffers
from bucky.errors import BuckyError, ConfigError
from bucky.messages import PROCS, self_metrics

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky")

BOOT_TIMEOUT = 60.0  # a plugin host importing plugins may be slow; a hung boot still ends
RESTART_WINDOW = 60.0
MAX_RESTARTS = 5  # deaths within RESTART_WINDOW before the daemon gives up
RESTART_DELAY, RESTART_FACTOR, RESTART_MAX_DELAY = 0.5, 2.0, 30.0  # 0.5, 1, 2, ... 30 s
STABLE_AFTER = 10.0  # a child that ran this long starts its restart delays afresh
# An auxiliary child (the status server) that keeps dying is given up on, then tried again after
# 5 minutes, 10, 20, ... at most an hour: it never halts the daemon.
AUX_RETRY_DELAY, AUX_RETRY_MAX_DELAY = 300.0, 3600.0
RELOAD_CHECK_TIMEOUT = 30.0  # seconds a reloaded config may take to evaluate and check
_ctx = multiprocessing.get_context("fork")  # children inherit the bound sockets and pipes
_OUTPUT_OPTION_PREFIXES = ("graphite_", "influxdb_", "name_", "http_")
_OUTPUT_OPTIONS = {"debug", "custom_clients", "self_metrics_interval", "self_metrics_prefix",
                   "process_join_timeout", "max_sample_queue"}
HTTP_REPORT_INTERVAL = 1.0  # seconds between process lists sent to the status server


class HaltError(BuckyError):
    """The daemon cannot go on; the message says why."""


def _restart_backoff() -> Backoff:
    return Backoff(RESTART_DELAY, RESTART_FACTOR, RESTART_MAX_DELAY, -1,
                   stable_after=STABLE_AFTER)


@dataclasses.dataclass(eq=False)
class Slot:
    spec: ChildSpec
    stage: int  # bucky.daemon.plan.STAGE_*: the shutdown order
    process: Any = None
    ctrl: Connection | None = None
    deaths: deque = dataclasses.field(default_factory=deque)
    backoff: Backoff = dataclasses.field(default_factory=_restart_backoff)
    restart_at: float | None = None
    stopping: bool = False
    boot_deadline: float | None = None  # set while the child has not reported "ready"
    booted_once: bool = False
    essential: bool = True  # bucky.daemon.plan.ChildPlan.essential
    give_ups: int = 0  # an auxiliary child: times it was given up on
    given_up_at: float | None = None  # wall-clock time of the last give-up
    given_up_cause: str | None = None
    last_cause: str | None = None  # what the child said when it last crashed

    @property
    def booting(self) -> bool:
        return self.boot_deadline is not None


@dataclasses.dataclass
class Sockets:
    udp: dict[str, list[socket.socket]]
    tcp: dict[str, socket.socket]

    def all(self) -> list[socket.socket]:
        return [s for group in self.udp.values() for s in group] + list(self.tcp.values())

    def close(self, keep: Sockets | None = None) -> None:
        """Close every socket that `keep` does not hold too."""
        kept = {id(s) for s in keep.all()} if keep is not None else set()
        for s in self.all():
            if id(s) not in kept:
                s.close()


def bind_all(plan: DaemonPlan, reuse: Sockets | None = None,
             old: DaemonPlan | None = None) -> Sockets:
    """Bind every socket of the plan; those whose address did not change since `old` are reused."""
    socks = Sockets({}, {})
    fresh: list[tuple[str, socket.socket]] = []  # newly bound UDP sockets, for one warning
    try:
        for spec in plan.sockets:
            before = old.socket(spec.name) if old is not None else None
            held: dict[str, Any] = {}
            if reuse is not None:
                held = reuse.udp if spec.proto == "udp" else reuse.tcp
            if before is not None and before.address == spec.address and spec.name in held:
                (socks.udp if spec.proto == "udp" else socks.tcp)[spec.name] = held[spec.name]
                continue
            try:
                if spec.proto == "udp":
                    socks.udp[spec.name] = bind_udp_workers(spec.host, spec.port, spec.purpose,
                                                            spec.count)
                    fresh.append((f"{spec.purpose} on UDP {format_address(spec.host, spec.port)}",
                                  socks.udp[spec.name][0]))
                else:
                    socks.tcp[spec.name] = bind_tcp(spec.host, spec.port, spec.purpose)
            except BindError as exc:
                if not spec.optional:
                    raise
                log.warning("%s; running without %s", exc, spec.purpose or spec.name)
    except BindError:
        socks.close(keep=reuse)
        raise
    report_receive_buffers(fresh)  # one line for all of them
    return socks


def _child_entry(spec: ChildSpec, foreign: list[socket.socket]) -> None:
    """In the forked child: let go of the sockets that belong to other children (a socket the
    supervisor closes later must not stay bound through a child), then run it."""
    for sock in foreign:
        try:
            sock.close()
        except OSError:
            pass
    child_main(spec)


@dataclasses.dataclass(eq=False)
class Reload:
    """A reload in progress: the new generation, and what it replaces."""

    cfg: Config
    plan: DaemonPlan
    sockets: Sockets
    slots: list[Slot]  # the new generation, kept outputs included
    channels: list[Channel]
    kept: list[Slot]  # output slots that keep running
    leftover: list[Channel]  # old channels the new generation does not reuse
    phase: str = "downstream"  # then "inputs"
    old_slots: list[Slot] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class ReloadCheck:
    """A reloaded config being evaluated in a short-lived child (`_check_config`)."""

    process: Any
    conn: Connection
    deadline: float  # monotonic


class _EvaluationTimeout(BaseException):
    """The config took longer than RELOAD_CHECK_TIMEOUT to evaluate in the supervisor."""


def _check_config(path: str | None, overrides: dict[str, Any], conn: Connection) -> None:
    """In a forked child: evaluate the config and build its plan (every check --check makes),
    and report ("ok",) or ("error", message). A config is arbitrary code: whatever it raises
    (KeyboardInterrupt, SystemExit, ...) or however long it sleeps, only this child suffers."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    result: tuple
    try:
        cfg, _ = config_mod.load(path, overrides)
        preflight(cfg)
        result = ("ok",)
    except ConfigError as exc:
        result = ("error", str(exc))
    except BaseException as exc:  # noqa: BLE001 -- that is the point
        result = ("error", f"{path or 'the configuration'}: {exc.__class__.__name__}: {exc}"
                  .rstrip(": "))
    try:
        conn.send(result)
    finally:
        os._exit(0)


class Supervisor:
    def __init__(self, cfg: Config, config_path: str | None = None,
                 cli_overrides: dict[str, Any] | None = None, *, plan: DaemonPlan | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.cli_overrides = cli_overrides or {}
        self.plan = plan if plan is not None else preflight(cfg)
        self.slots: list[Slot] = []
        self.channels: list[Channel] = []
        self.signals: deque[int] = deque()
        self.sockets: Sockets | None = None
        self.notifier = notifier or Notifier(None)
        self.started = False
        # What the status page says runs it (sent with the process list)
        self.about = {"version": bucky.__version__, "host": socket.gethostname(),
                      "config_file": os.path.abspath(config_path) if config_path else None,
                      "started": time.time()}
        self.reload: Reload | None = None
        self.hup_again = False
        self._wakeup_r: socket.socket | None = None
        # The process list for the status server (bucky/http): one channel for the daemon's life.
        self._http_channel: Channel | None = None
        self._http_writer: ChannelWriter | None = None
        self._http_reported = 0.0
        self._http_last: list[dict[str, Any]] = []
        # The supervisor's own self-metrics (restarts, given_up, reloads, ...): one channel into
        # each output, like every other process's self-metrics.
        self.counters: Counter[str] = Counter(dict.fromkeys(
            ("restarts", "given_up", "reloads", "reloads_failed"), 0))
        self._self_channels: dict[Slot, tuple[Channel, ChannelWriter]] = {}
        self._selfmetrics = self._new_selfmetrics(cfg)
        self.reload_check: ReloadCheck | None = None

    # -- set-up --------------------------------------------------------------------------------
    def bind(self) -> None:
        self.sockets = bind_all(self.plan)

    def _materialize(self, plan: DaemonPlan, sockets: Sockets, keep: list[Slot] | None = None,
                     old_channels: list[Channel] | None = None
                     ) -> tuple[list[Slot], list[Channel], list[Channel]]:
        """Slots and channels for a plan: (slots in start order, channels, old channels left
        unused). With `keep` (running output slots) the channels into them are reused by name,
        so what the old generation wrote into them is read by the same processes."""
        reuse = {ch.name: ch for ch in old_channels or []} if keep else {}
        kept = {slot.spec.title: slot for slot in keep or []}
        slots: dict[str, Slot] = {}
        for child in plan.children:
            if not child.essential and any(name not in sockets.tcp for _, name in child.streams):
                continue  # its optional socket could not be bound (bind_all warned)
            if child.role == "output" and child.title in kept:
                slot = kept[child.title]
                slot.spec.in_channels = []
            else:
                spec = ChildSpec(
                    child.role, child.kind, child.title, plan.cfg, index=child.index,
                    udp=[sockets.udp[name][i] for name, i in child.udp],
                    streams=[(kind, sockets.tcp[name]) for kind, name in child.streams],
                )
                slot = Slot(spec, child.stage, essential=child.essential)
            slots[child.title] = slot
        channels: list[Channel] = []
        for cp in plan.channels:
            if cp.producer not in slots or cp.consumer not in slots:
                continue
            ch = reuse.pop(cp.name, None) or Channel(cp.name)
            channels.append(ch)
            producer, consumer = slots[cp.producer].spec, slots[cp.consumer].spec
            if cp.mesh:  # StatsD workers: {"out": {consumer: ch}, "in": {producer: ch}}
                producer.mesh = producer.mesh or {"title": producer.title, "out": {}, "in": {}}
                consumer.mesh = consumer.mesh or {"title": consumer.title, "out": {}, "in": {}}
                producer.mesh["out"][cp.consumer] = ch
                consumer.mesh["in"][cp.producer] = ch
                continue
            (producer.record_channels if cp.records else producer.out_channels).append(ch)
            consumer.in_channels.append(ch)
        return list(slots.values()), channels, list(reuse.values())

    # -- children ------------------------------------------------------------------------------
    def _all_slots(self) -> list[Slot]:
        if self.reload is None:
            return list(self.slots)
        new = [s for s in self.reload.slots if s not in self.slots]
        return list(self.slots) + new

    def _foreign_sockets(self, spec: ChildSpec) -> list[socket.socket]:
        mine = {id(s) for s in spec.udp} | {id(listener) for _, listener in spec.streams}
        held: dict[int, socket.socket] = {}
        for socks in (self.sockets, self.reload.sockets if self.reload else None):
            if socks is not None:
                held.update((id(s), s) for s in socks.all())
        return [s for key, s in held.items() if key not in mine]

    def _spawn(self, slot: Slot) -> None:
        parent_end, child_end = _ctx.Pipe(duplex=False)
        slot.spec.ctrl = child_end
        slot.spec.parent_pid = os.getpid()
        proc = _ctx.Process(target=_child_entry, args=(slot.spec, self._foreign_sockets(slot.spec)),
                            name=f"bucky: {slot.spec.title}")
        proc.daemon = False
        proc.start()
        child_end.close()
        slot.process, slot.ctrl, slot.stopping, slot.restart_at = proc, parent_end, False, None
        slot.boot_deadline = time.monotonic() + BOOT_TIMEOUT
        slot.spec.state = None  # state is handed over once

    @staticmethod
    def _recv(slot: Slot) -> tuple | None:
        try:
            if slot.ctrl is not None and slot.ctrl.poll():
                return slot.ctrl.recv()
        except (EOFError, OSError):
            return None
        return None

    # -- signals -------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._wakeup_r, self._wakeup_w = r, w
        signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, self._record_signal)

    def _record_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r is not None and self._wakeup_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything and supervise until told to stop; returns the exit status."""
        self._install_signals()
        if self.sockets is None:
            self.bind()
        assert self.sockets is not None
        self.slots, self.channels, _ = self._materialize(self.plan, self.sockets)
        self._attach_http(self.slots)
        self._attach_self_channels(self.slots)
        self.notifier.status("starting: " + ", ".join(s.spec.title for s in self.slots))
        for slot in self.slots:  # consumers first; nobody waits for anybody to boot
            self._spawn(slot)
        try:
            return self._loop()
        except HaltError as exc:
            log.error("%s; stopping", exc)
            self.notifier.stopping(f"stopping: {exc}")
            self._stop_all(graceful=self.started)
            return 1

    def _loop(self) -> int:
        while True:
            while self.signals:
                sig = self.signals.popleft()
                if sig in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s: stopping", signal.Signals(sig).name)
                    self.notifier.stopping("stopping")
                    clean = self._stop_all(graceful=True)
                    return 0 if clean else 1
                if sig == signal.SIGQUIT:
                    log.info("received SIGQUIT: stopping at once")
                    self.notifier.stopping("stopping at once")
                    self._stop_all(graceful=False)
                    return 0
                if sig == signal.SIGHUP:
                    if (not self.started or self.reload is not None
                            or self.reload_check is not None):
                        self.hup_again = True  # taken up once what is under way is done
                        log.info("received SIGHUP: reloading once the %s is done",
                                 "start" if not self.started else "current reload")
                    else:
                        self.handle_hup()
            now = time.monotonic()
            waitables: list[Any] = [self._wakeup_r]
            timeout = 1.0
            for slot in self._all_slots():
                if slot.process is not None and slot.process.is_alive():
                    waitables.append(slot.process.sentinel)
                    if slot.booting and slot.ctrl is not None:
                        waitables.append(slot.ctrl)
                        timeout = min(timeout, max(slot.boot_deadline - now, 0.0))  # type: ignore[operator]
                elif slot.restart_at is not None:
                    timeout = min(timeout, max(slot.restart_at - now, 0.0))
            check = self.reload_check
            if check is not None:
                waitables += [check.process.sentinel, check.conn]
                timeout = min(timeout, max(check.deadline - now, 0.0))
            wait(waitables, timeout)
            self._drain_wakeup()
            self._poll_reload_check()
            self._reap_and_restart()
            self._progress()
            self._report_to_http()
            self._send_self_metrics()

    # -- the status server -----------------------------------------------------------------------
    def _attach_http(self, slots: list[Slot]) -> None:
        """Give a new status-server slot the supervisor's channel (which processes are up)."""
        for slot in slots:
            if slot.spec.role != "http" or slot.process is not None:
                continue
            if self._http_channel is None:
                self._http_channel = Channel("supervisor->http")
                self._http_writer = self._http_channel.writer(1 << 20)
            if self._http_channel not in slot.spec.in_channels:
                slot.spec.in_channels.append(self._http_channel)

    # -- the supervisor's self-metrics -------------------------------------------------------------
    @staticmethod
    def _new_selfmetrics(cfg: Config) -> SelfMetrics:
        return SelfMetrics.from_config("supervisor", cfg, time.time)

    def _attach_self_channels(self, slots: list[Slot]) -> None:
        """A channel from the supervisor into each output process (one reader each: a new
        generation's output gets a new one; a kept output keeps its own)."""
        for slot in slots:
            if slot.spec.role != "output":
                continue
            entry = self._self_channels.get(slot)
            if entry is None:
                ch = Channel(f"supervisor->{slot.spec.title}")
                entry = self._self_channels[slot] = (ch, ch.writer(1 << 20))
            if entry[0] not in slot.spec.in_channels:
                slot.spec.in_channels.append(entry[0])

    def _prune_self_channels(self) -> None:
        """Close the channels of output slots that are gone (after a reload)."""
        live = set(self._all_slots())
        for slot in [s for s in self._self_channels if s not in live]:
            self._self_channels.pop(slot)[0].close()

    def _send_self_metrics(self, final: bool = False) -> None:
        mono = time.monotonic()
        writers = [w for slot, (_, w) in self._self_channels.items() if slot in self.slots]
        for writer in writers:
            writer.pump()
        if not (final and self.cfg.self_metrics_interval > 0) and not self._selfmetrics.due(mono):
            return
        samples = self._selfmetrics.collect(mono, [self.counters])
        frame = self_metrics(samples, self._selfmetrics.gauge_names)
        for writer in writers:
            writer.put(frame)
            writer.pump()

    def _report_to_http(self, force: bool = False) -> None:
        """The process list for /health: at once on a change, else once a second."""
        if self._http_writer is None:
            return
        now = time.monotonic()
        procs = [{"title": s.spec.title, "role": s.spec.role, "kind": s.spec.kind,
                  "up": bool(s.process is not None and s.process.is_alive() and not s.booting
                             and not s.stopping and s.restart_at is None),
                  "restarts": len(s.deaths), "essential": s.essential,
                  "given_up_at": s.given_up_at, "given_up_cause": s.given_up_cause}
                 for s in self.slots]
        if force or procs != self._http_last or now - self._http_reported >= HTTP_REPORT_INTERVAL:
            self._http_reported, self._http_last = now, procs
            self._http_writer.put((PROCS, {"time": time.time(), "processes": procs,
                                           "about": self.about}))

    def _progress(self) -> None:
        """Move the start or a reload on when the children it waits for have booted."""
        if not self.started:
            if all(not s.booting for s in self.slots):
                self.started = True
                titles = ", ".join(s.spec.title for s in self.slots)
                log.info("bucky started: %s", titles)
                self.notifier.ready(f"running: {titles}")
        elif self.reload is not None:
            self._advance_reload()
        if (self.started and self.reload is None and self.reload_check is None
                and self.hup_again):
            self.hup_again = False
            self.handle_hup()

    def _reap_and_restart(self) -> None:
        """Read boot reports, notice deaths and boot timeouts, restart what is due."""
        now = time.monotonic()
        for slot in self._all_slots():
            proc = slot.process
            if proc is not None and slot.booting:
                msg = self._recv(slot)
                if msg and msg[0] == "ready":
                    slot.boot_deadline = None
                    slot.backoff.connected(now)
                    if slot.booted_once and self.started:
                        log.info("%s restarted", slot.spec.title)
                    slot.booted_once = True
                elif msg and msg[0] == "error":
                    self._boot_failed(slot, str(msg[1]), now)
                    continue
                elif not proc.is_alive():
                    proc.join(0.1)
                    self._boot_failed(slot, f"exit code {proc.exitcode}", now)
                    continue
                elif now >= slot.boot_deadline:  # type: ignore[operator]
                    proc.kill()
                    proc.join(1.0)
                    self._boot_failed(slot, f"did not start within {BOOT_TIMEOUT:.0f} s", now)
                    continue
            elif (proc is not None and not proc.is_alive() and slot.restart_at is None
                  and not slot.stopping):
                proc.join(0.1)
                self._died(slot, f"died unexpectedly (exit code {proc.exitcode})", now)
            if slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot)

    def _died(self, slot: Slot, what: str, now: float) -> None:
        slot.deaths.append(now)
        self.counters["restarts"] += 1
        while slot.deaths and now - slot.deaths[0] > RESTART_WINDOW:
            slot.deaths.popleft()
        cause = self._crash_report(slot)
        if cause:
            what = f"{what}: {cause}"
            slot.last_cause = cause
        cause = cause or slot.last_cause  # a SIGKILLed child says nothing: the last one known
        if len(slot.deaths) > MAX_RESTARTS:
            code = slot.process.exitcode if slot.process is not None else None
            why = (f"{slot.spec.title} keeps dying ({len(slot.deaths)} times in "
                   f"{RESTART_WINDOW:.0f} s, last exit code {code}"
                   + (f", {cause}" if cause else "") + ")")
            if slot.essential:
                raise HaltError(why)
            self._give_up(slot, why, cause or what, now)
            return
        if slot.backoff.is_stable(now):
            slot.backoff.reset()
        slot.backoff.failure(now)
        delay = slot.backoff.current_delay()
        log.error("%s %s; restarting in %.1f s", slot.spec.title, what, delay)
        self.notifier.status(f"{slot.spec.title} {what}; restarting in {delay:.1f} s")
        slot.restart_at = now + delay
        slot.boot_deadline = None

    def _give_up(self, slot: Slot, why: str, cause: str, now: float) -> None:
        """An auxiliary child that keeps dying: one ERROR line, a self-metric, a long pause
        (AUX_RETRY_DELAY, doubling up to AUX_RETRY_MAX_DELAY), then it is tried again."""
        slot.give_ups += 1
        slot.given_up_at, slot.given_up_cause = time.time(), cause
        self.counters["given_up"] += 1
        delay = min(AUX_RETRY_DELAY * 2 ** (slot.give_ups - 1), AUX_RETRY_MAX_DELAY)
        log.error("%s; giving up on it (it is not on the data path: relaying goes on); "
                  "trying again in %.0f s", why, delay)
        self.notifier.status(f"{slot.spec.title} given up on; trying again in {delay:.0f} s")
        slot.deaths.clear()
        slot.last_cause = None
        slot.backoff.reset()
        slot.restart_at = now + delay
        slot.boot_deadline = None

    def _crash_report(self, slot: Slot) -> str | None:
        """What a crashed child said about its end (bucky.daemon.children sends it)."""
        report = None
        for _ in range(16):
            msg = self._recv(slot)
            if not msg:
                break
            if msg[0] in ("crashed", "error"):
                report = str(msg[1])
        return report

    def _boot_failed(self, slot: Slot, reason: str, now: float) -> None:
        slot.boot_deadline = None
        if not self.started and slot.essential:
            raise HaltError(f"{slot.spec.title} failed to start: {reason}")
        reload = self.reload
        if (reload is not None and reload.phase == "downstream" and slot in reload.slots
                and slot.essential):
            self._cancel_reload(f"{slot.spec.title} failed to start: {reason}")
            return
        self._died(slot, f"failed to start: {reason}", now)

    # -- stopping ------------------------------------------------------------------------------
    def _stop_stage(self, slots: list[Slot], sig: int) -> tuple[bool, dict[str, Any]]:
        timeout = self.cfg.process_join_timeout
        states: dict[str, Any] = {}
        live = [s for s in slots if s.process is not None and s.process.is_alive()]
        for slot in live:
            slot.stopping = True
            try:
                # A child still booting holds no data: it is not waited for.
                os.kill(slot.process.pid, signal.SIGKILL if slot.booting else sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        clean = True
        for slot in live:
            was_booting = slot.booting
            while True:
                remaining = deadline - time.monotonic()
                msg = self._recv(slot)
                if msg and msg[0] == "state":
                    states[slot.spec.title] = msg[1]
                    continue
                if not slot.process.is_alive() or remaining <= 0:
                    break
                wait([slot.process.sentinel, slot.ctrl], min(remaining, 0.1))
            slot.process.join(0.05)
            if slot.process.is_alive():
                log.error("%s did not stop within %.1f s; killing it", slot.spec.title, timeout)
                slot.process.kill()
                slot.process.join(1.0)
                clean = False
            elif slot.process.exitcode != 0 and not was_booting:
                clean = False
            msg = self._recv(slot)
            if msg and msg[0] == "state":
                states[slot.spec.title] = msg[1]
        for slot in slots:
            slot.restart_at = None
            slot.boot_deadline = None
        return clean, states

    def _stop_all(self, graceful: bool) -> bool:
        self._end_reload_check()
        if graceful:
            self._send_self_metrics(final=True)  # read by the outputs before they stop
        clean = True
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        slots = self._all_slots()
        for stage in sorted({s.stage for s in slots}):
            ok, _ = self._stop_stage([s for s in slots if s.stage == stage], sig)
            clean = clean and ok
        for slot in slots:
            slot.process = None
        channels = list(self.channels)
        if self.reload is not None:
            channels += [ch for ch in self.reload.channels if ch not in channels]
            self.reload.sockets.close(keep=self.sockets)
            self.reload = None
        for ch in channels:
            ch.close()
        self.channels.clear()
        if self._http_channel is not None:
            self._http_channel.close()
            self._http_channel = self._http_writer = None
        for ch, _ in self._self_channels.values():
            ch.close()
        self._self_channels.clear()
        return clean

    # -- reload --------------------------------------------------------------------------------
    def handle_hup(self) -> None:
        """Start evaluating the new config in a short-lived child; the loop goes on meanwhile
        (a SIGTERM is acted on at once) and applies it once the child says it is sound."""
        log.info("received SIGHUP: reloading %s", self.config_path or "the configuration")
        self.notifier.reloading("reloading")
        parent_end, child_end = _ctx.Pipe(duplex=False)
        proc = _ctx.Process(target=_check_config,
                            args=(self.config_path, self.cli_overrides, child_end),
                            name="bucky: config check")
        proc.daemon = False
        proc.start()
        child_end.close()
        self.reload_check = ReloadCheck(proc, parent_end,
                                        time.monotonic() + RELOAD_CHECK_TIMEOUT)

    def _poll_reload_check(self) -> None:
        check = self.reload_check
        if check is None:
            return
        result: tuple | None = None
        try:
            if check.conn.poll():
                result = check.conn.recv()
        except (EOFError, OSError):
            result = ("error", "the config check ended without an answer")
        if result is None:
            if check.process.is_alive() and time.monotonic() < check.deadline:
                return
            if check.process.is_alive():
                result = ("error", f"evaluating the configuration took longer than "
                                   f"{RELOAD_CHECK_TIMEOUT:.0f} s")
            else:
                check.process.join(0.1)
                result = ("error", f"the config check died (exit code {check.process.exitcode})")
        self._end_reload_check()
        if result[0] == "ok":
            self._apply_reload()
        else:
            self._reload_failed(str(result[1]))

    def _end_reload_check(self) -> None:
        check = self.reload_check
        if check is None:
            return
        self.reload_check = None
        if check.process.is_alive():
            check.process.kill()
        check.process.join(1.0)
        check.conn.close()

    def _reload_failed(self, why: str) -> None:
        self.counters["reloads_failed"] += 1
        log.error("reload failed, keeping the running configuration: %s", why)
        self.notifier.ready("running; the last reload failed: " + why)

    def _load_new_config(self) -> tuple[Config, list[str], DaemonPlan]:
        """The config again, in the supervisor (the children need its functions and classes);
        it just evaluated in the check's child, and a time limit still guards this run."""
        def on_alarm(signum: int, frame: object) -> None:
            raise _EvaluationTimeout(f"evaluating the configuration took longer than "
                                     f"{RELOAD_CHECK_TIMEOUT:.0f} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, RELOAD_CHECK_TIMEOUT)
        try:
            new_cfg, warnings = config_mod.load(self.config_path, self.cli_overrides)
            return new_cfg, warnings, preflight(new_cfg)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _apply_reload(self) -> None:
        try:
            new_cfg, warnings, new_plan = self._load_new_config()
            assert self.sockets is not None
            new_socks = bind_all(new_plan, reuse=self.sockets, old=self.plan)
        except (ConfigError, BindError) as exc:
            self._reload_failed(str(exc))
            return
        except BaseException as exc:  # noqa: BLE001 -- nothing a config does may end the loop
            log.error("reload failed", exc_info=not isinstance(exc, _EvaluationTimeout))
            self._reload_failed(f"{exc.__class__.__name__}: {exc}")
            return
        for warning in warnings:
            log.warning("%s", warning)
        keep = self._outputs_unchanged(new_cfg, new_plan)
        kept = [s for s in self.slots if s.stage == STAGE_OUTPUT] if keep else []
        slots, channels, leftover = self._materialize(
            new_plan, new_socks, keep=kept or None, old_channels=self.channels)
        self._attach_http(slots)
        self._attach_self_channels(slots)
        if not keep:
            leftover = list(self.channels)
        self.reload = Reload(new_cfg, new_plan, new_socks, slots, channels, kept, leftover,
                             old_slots=list(self.slots))
        if keep:
            # The outputs' channels are shared: the old writers stop before the new ones start.
            self._hand_over(stop_processor=True)
        else:
            for slot in slots:
                if slot.stage != STAGE_INPUT:
                    self._spawn(slot)
        self._advance_reload()

    def _hand_over(self, stop_processor: bool) -> None:
        """Old inputs hand their state over and stop; the new inputs (and, with
        `stop_processor`, the new processor in place of the old) start."""
        reload = self.reload
        assert reload is not None and self.sockets is not None
        old_inputs = [s for s in reload.old_slots if s.stage == STAGE_INPUT]
        _, states = self._stop_stage(old_inputs, signal.SIGHUP)
        if stop_processor:
            self._stop_stage([s for s in reload.old_slots if s.stage == STAGE_PROCESSOR],
                             signal.SIGTERM)
        for slot in old_inputs:
            slot.process = None
        self.sockets.close(keep=reload.sockets)  # the old inputs were their last readers
        self.sockets = reload.sockets
        for slot in reload.slots:
            if slot.process is None and (slot.stage == STAGE_INPUT or stop_processor):
                slot.spec.state = handover_state(slot.spec.kind, slot.spec.title, states)
                self._spawn(slot)
        reload.phase = "inputs"

    def _advance_reload(self) -> None:
        reload = self.reload
        if reload is None:
            return
        if reload.phase == "downstream":
            if any(s.booting for s in reload.slots if s.process is not None):
                return
            log.info("reload: %s up next to the running processes; the inputs hand over",
                     ", ".join(s.spec.title for s in reload.slots if s.process is not None))
            self._hand_over(stop_processor=False)
        if any(s.booting for s in reload.slots):
            return
        # Every new child is up: the old generation drains and stops, in order.
        old = [s for s in reload.old_slots if s not in reload.slots and s.process is not None]
        for stage in sorted({s.stage for s in old}):
            self._stop_stage([s for s in old if s.stage == stage], signal.SIGTERM)
        for ch in reload.leftover:
            ch.close()
        self.slots, self.channels = reload.slots, reload.channels
        if (reload.cfg.self_metrics_interval, reload.cfg.self_metrics_prefix) != (
                self.cfg.self_metrics_interval, self.cfg.self_metrics_prefix):
            self._selfmetrics = self._new_selfmetrics(reload.cfg)
        self.cfg, self.plan = reload.cfg, reload.plan
        self.reload = None
        self.counters["reloads"] += 1
        self._prune_self_channels()
        titles = ", ".join(s.spec.title for s in self.slots)
        log.info("configuration reloaded%s", " (outputs kept running)" if reload.kept else "")
        self.notifier.ready(f"running: {titles}")

    def _cancel_reload(self, why: str) -> None:
        """A new output or processor could not boot: the old generation never stopped."""
        reload = self.reload
        assert reload is not None
        new = [s for s in reload.slots if s not in reload.old_slots]
        for slot in new:
            if slot.process is not None and slot.process.is_alive():
                slot.process.kill()
                slot.process.join(1.0)
            slot.process, slot.restart_at, slot.boot_deadline = None, None, None
        for ch in reload.channels:
            if ch not in self.channels:
                ch.close()
        reload.sockets.close(keep=self.sockets)
        self.reload = None
        self._prune_self_channels()
        self._reload_failed(why)

    def _outputs_unchanged(self, new_cfg: Config, new_plan: DaemonPlan) -> bool:
        def output_options(cfg: Config) -> dict[str, Any]:
            return {name: getattr(cfg, name) for name in config_mod.OPTION_BY_NAME
                    if name.startswith(_OUTPUT_OPTION_PREFIXES) or name in _OUTPUT_OPTIONS}

        return (output_options(new_cfg) == output_options(self.cfg)
                and new_plan.shape() == self.plan.shape())
