"""The supervisor: binds sockets, owns the channels, starts and watches the children.

Modelled on gunicorn's arbiter: signal handlers only record the signal and wake the loop; the loop
acts (SIGTERM/SIGINT: ordered stop, SIGQUIT: stop at once, SIGHUP: reload). Children are watched
through `Process.sentinel` and their control pipes, never SIGCHLD, and the loop never blocks
waiting for one: a child's boot ("ready", "error", death, or BOOT_TIMEOUT) is an event like a
signal, so a SIGTERM during a slow boot is acted on at once.

What runs comes from a `DaemonPlan` (bucky.daemon.preflight): checked before anything is bound, so
a config that a child would refuse is refused here. A child that dies unexpectedly is restarted
after a `Backoff` delay, reusing its sockets and channels; one that cannot boot at start-up, or
dies too often, halts the daemon with a non-zero exit so the init system takes over. Shutdown is
ordered: inputs, then the processor, then the outputs, each given `process_join_timeout` before
being killed (a child still booting holds no data and is killed at once).

Reload (SIGHUP): the new config is loaded, its plan built and its new sockets bound before the
running children are touched; any failure is one log line and the running config stays. Then:
- outputs whose options and inputs are unchanged keep running (with what they buffer); the old
  inputs hand their state over and stop, the old processor drains and stops, the new processor
  and inputs start;
- otherwise the new outputs (and processor) start first, next to the old ones; once they are up
  the old inputs hand their state over and stop and the new inputs start on the same sockets
  (the kernel buffers what arrives meanwhile); once those are up the old processor and outputs
  drain and stop. A new output or processor that cannot boot cancels the reload.
sd_notify (bucky.daemon.notify) reports READY=1, RELOADING=1, STOPPING=1 and STATUS= lines.
The supervisor never touches a sample.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from bucky import config as config_mod
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
from bucky.daemon.sockets import BindError, bind_tcp, bind_udp_workers
from bucky.errors import BuckyError, ConfigError

if TYPE_CHECKING:
    from bucky.config import Config

log = logging.getLogger("bucky")

BOOT_TIMEOUT = 60.0  # a plugin host importing plugins may be slow; a hung boot still ends
RESTART_WINDOW = 60.0
MAX_RESTARTS = 5  # deaths within RESTART_WINDOW before the daemon gives up
RESTART_DELAY, RESTART_FACTOR, RESTART_MAX_DELAY = 0.5, 2.0, 30.0  # 0.5, 1, 2, ... 30 s
STABLE_AFTER = 10.0  # a child that ran this long starts its restart delays afresh
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
    try:
        for spec in plan.sockets:
            before = old.socket(spec.name) if old is not None else None
            if reuse is not None and before is not None and before.address == spec.address:
                if spec.proto == "udp":
                    socks.udp[spec.name] = reuse.udp[spec.name]
                else:
                    socks.tcp[spec.name] = reuse.tcp[spec.name]
                continue
            if spec.proto == "udp":
                socks.udp[spec.name] = bind_udp_workers(spec.host, spec.port, spec.purpose,
                                                        spec.count)
            else:
                socks.tcp[spec.name] = bind_tcp(spec.host, spec.port, spec.purpose)
    except BindError:
        socks.close(keep=reuse)
        raise
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
        self.reload: Reload | None = None
        self.hup_again = False
        self._wakeup_r: socket.socket | None = None
        # The process list for the status server (bucky/http): one channel for the daemon's life.
        self._http_channel: Channel | None = None
        self._http_writer: ChannelWriter | None = None
        self._http_reported = 0.0
        self._http_last: list[dict[str, Any]] = []

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
            if child.role == "output" and child.title in kept:
                slot = kept[child.title]
                slot.spec.in_channels = []
            else:
                spec = ChildSpec(
                    child.role, child.kind, child.title, plan.cfg, index=child.index,
                    udp=[sockets.udp[name][i] for name, i in child.udp],
                    streams=[(kind, sockets.tcp[name]) for kind, name in child.streams],
                )
                slot = Slot(spec, child.stage)
            slots[child.title] = slot
        channels: list[Channel] = []
        for cp in plan.channels:
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
                    if not self.started or self.reload is not None:
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
            wait(waitables, timeout)
            self._drain_wakeup()
            self._reap_and_restart()
            self._progress()
            self._report_to_http()

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

    def _report_to_http(self, force: bool = False) -> None:
        """The process list for /health: at once on a change, else once a second."""
        if self._http_writer is None:
            return
        now = time.monotonic()
        procs = [{"title": s.spec.title, "role": s.spec.role, "kind": s.spec.kind,
                  "up": bool(s.process is not None and s.process.is_alive() and not s.booting
                             and not s.stopping and s.restart_at is None),
                  "restarts": len(s.deaths)} for s in self.slots]
        if force or procs != self._http_last or now - self._http_reported >= HTTP_REPORT_INTERVAL:
            self._http_reported, self._http_last = now, procs
            self._http_writer.put(("procs", {"time": time.time(), "processes": procs}))

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
        if self.started and self.reload is None and self.hup_again:
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
        while slot.deaths and now - slot.deaths[0] > RESTART_WINDOW:
            slot.deaths.popleft()
        if len(slot.deaths) > MAX_RESTARTS:
            code = slot.process.exitcode if slot.process is not None else None
            raise HaltError(f"{slot.spec.title} keeps dying ({len(slot.deaths)} times in "
                            f"{RESTART_WINDOW:.0f} s, last exit code {code})")
        if slot.backoff.is_stable(now):
            slot.backoff.reset()
        slot.backoff.failure(now)
        delay = slot.backoff.current_delay()
        log.error("%s %s; restarting in %.1f s", slot.spec.title, what, delay)
        self.notifier.status(f"{slot.spec.title} {what}; restarting in {delay:.1f} s")
        slot.restart_at = now + delay
        slot.boot_deadline = None

    def _boot_failed(self, slot: Slot, reason: str, now: float) -> None:
        slot.boot_deadline = None
        if not self.started:
            raise HaltError(f"{slot.spec.title} failed to start: {reason}")
        reload = self.reload
        if reload is not None and reload.phase == "downstream" and slot in reload.slots:
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
        return clean

    # -- reload --------------------------------------------------------------------------------
    def handle_hup(self) -> None:
        log.info("received SIGHUP: reloading %s", self.config_path or "the configuration")
        self.notifier.reloading("reloading")
        try:
            new_cfg, warnings = config_mod.load(self.config_path, self.cli_overrides)
            new_plan = preflight(new_cfg)
            assert self.sockets is not None
            new_socks = bind_all(new_plan, reuse=self.sockets, old=self.plan)
        except (ConfigError, BindError) as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready("running; the last reload failed: " + str(exc))
            return
        except Exception as exc:  # a bug in a check must not take the running daemon down
            log.exception("reload failed, keeping the running configuration: %s: %s",
                          exc.__class__.__name__, exc)
            self.notifier.ready("running; the last reload failed")
            return
        for warning in warnings:
            log.warning("%s", warning)
        keep = self._outputs_unchanged(new_cfg, new_plan)
        kept = [s for s in self.slots if s.stage == STAGE_OUTPUT] if keep else []
        slots, channels, leftover = self._materialize(
            new_plan, new_socks, keep=kept or None, old_channels=self.channels)
        self._attach_http(slots)
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
        self.cfg, self.plan = reload.cfg, reload.plan
        self.reload = None
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
        log.error("reload failed, keeping the running configuration: %s", why)
        self.notifier.ready("running; the last reload failed: " + why)

    def _outputs_unchanged(self, new_cfg: Config, new_plan: DaemonPlan) -> bool:
        def output_options(cfg: Config) -> dict[str, Any]:
            return {name: getattr(cfg, name) for name in config_mod.OPTION_BY_NAME
                    if name.startswith(_OUTPUT_OPTION_PREFIXES) or name in _OUTPUT_OPTIONS}

        return (output_options(new_cfg) == output_options(self.cfg)
                and new_plan.shape() == self.plan.shape())
