"""The supervisor: binds sockets, owns the channels, starts and watches the children.

Modelled on gunicorn's arbiter: signal handlers only record the signal and wake the loop; the loop
acts (handle_term, handle_hup, ...). Children are watched through `Process.sentinel`, never
SIGCHLD. A child that dies unexpectedly is restarted with backoff, reusing its sockets and
channels; one that cannot boot, or dies too often, halts the daemon with a non-zero exit so the
init system takes over. Shutdown is ordered: inputs, then the processor, then the outputs, each
given `process_join_timeout` before being killed. The supervisor never touches a sample.
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
from typing import Any

from bucky import config as config_mod
from bucky.daemon.channels import Channel
from bucky.daemon.children import ChildSpec, child_main
from bucky.daemon.sockets import BindError, bind_tcp, bind_udp_workers
from bucky.errors import BuckyError, ConfigError

log = logging.getLogger("bucky")

BOOT_TIMEOUT = 60.0  # a plugin host importing plugins may be slow; a hung boot still ends
RESTART_WINDOW = 60.0
MAX_RESTARTS = 5  # deaths within RESTART_WINDOW before the daemon gives up
_ctx = multiprocessing.get_context("fork")  # children inherit the bound sockets and pipes
_OUTPUT_OPTION_PREFIXES = ("graphite_", "influxdb_", "name_")
_OUTPUT_OPTIONS = {"debug", "custom_clients", "self_metrics_interval", "process_join_timeout",
                   "max_sample_queue"}


class HaltError(BuckyError):
    """The daemon cannot go on; the message says why."""


@dataclasses.dataclass
class Slot:
    spec: ChildSpec
    stage: int  # 0 inputs, 1 processor, 2 outputs: the shutdown order
    process: Any = None
    ctrl: Connection | None = None
    deaths: deque = dataclasses.field(default_factory=deque)
    restart_at: float | None = None
    stopping: bool = False


def _output_names(cfg: Any) -> list[str]:
    from bucky.daemon.outputs import output_factories

    return [factory.name for factory in output_factories(cfg)]


@dataclasses.dataclass
class Sockets:
    udp: dict[str, list[socket.socket]]
    tcp: dict[str, socket.socket]

    def close(self) -> None:
        for socks in self.udp.values():
            for s in socks:
                s.close()
        for s in self.tcp.values():
            s.close()


def _socket_plan(cfg: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {}
    if cfg.collectd_enabled:
        plan["collectd"] = ("udp", cfg.collectd_ip, cfg.collectd_port, cfg.collectd_workers)
    if cfg.statsd_enabled:
        plan["statsd"] = ("udp", cfg.statsd_ip, cfg.statsd_port, 1)
        if cfg.statsd_tcp_port:
            plan["statsd_tcp"] = ("tcp", cfg.statsd_ip, cfg.statsd_tcp_port, 1)
    if cfg.metricsd_enabled:
        plan["metricsd"] = ("udp", cfg.metricsd_ip, cfg.metricsd_port, 1)
    if cfg.carbon_enabled:  # one process: plaintext over UDP and TCP, pickle over TCP
        plan["carbon"] = ("udp", cfg.carbon_ip, cfg.carbon_line_port, 1)
        plan["carbon_line"] = ("tcp", cfg.carbon_ip, cfg.carbon_line_port, 1)
        plan["carbon_pickle"] = ("tcp", cfg.carbon_ip, cfg.carbon_pickle_port, 1)
    return plan


# The TCP listeners an input reads as streams (ChildSpec.streams): input -> (kind, plan name).
STREAM_LISTENERS = {"carbon": (("line", "carbon_line"), ("pickle", "carbon_pickle"))}


def bind_all(cfg: Any, reuse: Sockets | None = None, old_plan: dict | None = None) -> Sockets:
    """Bind every socket the config asks for; sockets whose address did not change are reused."""
    plan = _socket_plan(cfg)
    socks = Sockets({}, {})
    try:
        for name, (proto, host, port, count) in plan.items():
            if reuse is not None and old_plan is not None and old_plan.get(name) == plan[name]:
                if proto == "udp":
                    socks.udp[name] = reuse.udp[name]
                else:
                    socks.tcp[name] = reuse.tcp[name]
                continue
            purpose = name.replace("_tcp", "")
            if proto == "udp":
                socks.udp[name] = bind_udp_workers(host, port, purpose, count)
            else:
                socks.tcp[name] = bind_tcp(host, port, purpose)
    except BindError:
        for key, group in socks.udp.items():
            if reuse is None or reuse.udp.get(key) is not group:
                for s in group:
                    s.close()
        for key, s in socks.tcp.items():
            if reuse is None or reuse.tcp.get(key) is not s:
                s.close()
        raise
    return socks


class Supervisor:
    def __init__(self, cfg: Any, config_path: str | None = None,
                 cli_overrides: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.cli_overrides = cli_overrides or {}
        self.slots: list[Slot] = []
        self.channels: list[Channel] = []
        self.signals: deque[int] = deque()
        self.sockets: Sockets | None = None
        self.plan: dict[str, Any] = {}
        self._wakeup_r: socket.socket | None = None

    # -- set-up --------------------------------------------------------------------------------
    def bind(self) -> None:
        self.sockets = bind_all(self.cfg)
        self.plan = _socket_plan(self.cfg)

    def _build_slots(self, cfg: Any, states: dict[str, Any] | None = None,
                     keep_outputs: list[Slot] | None = None) -> list[Slot]:
        """Plan every child and the channels between them.

        With `keep_outputs` (a reload that leaves the outputs alone) the running output slots
        and their channels are reused, so what they buffer (carbon down) survives the reload."""
        assert self.sockets is not None
        states = states or {}
        old_channels = {ch.name: ch for ch in self.channels} if keep_outputs else {}
        channels: list[Channel] = []

        def channel(name: str) -> Channel:
            ch = old_channels.pop(name, None) or Channel(name)
            channels.append(ch)
            return ch

        if keep_outputs:
            out_slots = keep_outputs
            for out in out_slots:
                out.spec.in_channels = []
        else:
            out_slots = [
                Slot(ChildSpec("output", name, name, cfg, index=i), stage=2)
                for i, name in enumerate(_output_names(cfg))
            ]
        inputs: list[Slot] = []
        for name, socks in self.sockets.udp.items():
            for i, sock in enumerate(socks):
                title = name if len(socks) == 1 else f"{name}.{i + 1}"
                spec = ChildSpec("input", name, title, cfg, udp=[sock], state=states.get(title))
                if name == "statsd":
                    spec.tcp = self.sockets.tcp.get("statsd_tcp")
                spec.streams = [(kind, self.sockets.tcp[listener])
                                for kind, listener in STREAM_LISTENERS.get(name, ())]
                inputs.append(Slot(spec, stage=0))
        host_slot = None
        if cfg.collectd_python_config:
            host_slot = Slot(ChildSpec("input", "python_plugins", "python_plugins", cfg,
                                       state=states.get("python_plugins")), stage=0)
            for slot in inputs:
                if slot.spec.kind == "collectd":
                    ch = channel(f"{slot.spec.title}->python_plugins")
                    slot.spec.record_channels.append(ch)
                    host_slot.spec.in_channels.append(ch)
            inputs.append(host_slot)
        processor = None
        if cfg.processor is not None:
            processor = Slot(ChildSpec("processor", "processor", "processor", cfg), stage=1)
            for slot in inputs:
                ch = channel(f"{slot.spec.title}->processor")
                slot.spec.out_channels.append(ch)
                processor.spec.in_channels.append(ch)
            for out in out_slots:
                ch = channel(f"processor->{out.spec.title}")
                processor.spec.out_channels.append(ch)
                out.spec.in_channels.append(ch)
        else:
            for slot in inputs:
                for out in out_slots:
                    ch = channel(f"{slot.spec.title}->{out.spec.title}")
                    slot.spec.out_channels.append(ch)
                    out.spec.in_channels.append(ch)
        for ch in old_channels.values():
            ch.close()
        self.channels = channels
        # Consumers start before producers.
        return out_slots + ([processor] if processor else []) + inputs

    # -- children ------------------------------------------------------------------------------
    def _spawn(self, slot: Slot) -> None:
        parent_end, child_end = _ctx.Pipe(duplex=False)
        slot.spec.ctrl = child_end
        slot.spec.parent_pid = os.getpid()
        proc = _ctx.Process(target=child_main, args=(slot.spec,), name=f"bucky: {slot.spec.title}")
        proc.daemon = False
        proc.start()
        child_end.close()
        slot.process, slot.ctrl, slot.stopping, slot.restart_at = proc, parent_end, False, None
        slot.spec.state = None  # state is handed over once

    def _await_boot(self, slots: list[Slot]) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        waiting = {id(s): s for s in slots}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = ", ".join(s.spec.title for s in waiting.values())
                raise HaltError(f"{names} did not start within {BOOT_TIMEOUT:.0f} s")
            conns = {s.ctrl: s for s in waiting.values()}
            sentinels = {s.process.sentinel: s for s in waiting.values()}
            for ready in wait(list(conns) + list(sentinels), remaining):
                slot = conns.get(ready) or sentinels.get(ready)  # type: ignore[arg-type]
                if slot is None or id(slot) not in waiting:
                    continue
                msg = self._recv(slot)
                if msg and msg[0] == "ready":
                    del waiting[id(slot)]
                elif msg and msg[0] == "error":
                    raise HaltError(f"{slot.spec.title} failed to start: {msg[1]}")
                elif not slot.process.is_alive():
                    slot.process.join(0.1)
                    raise HaltError(f"{slot.spec.title} failed to start "
                                    f"(exit code {slot.process.exitcode})")

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
        self.slots = self._build_slots(self.cfg)
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._await_boot(self.slots)
        except HaltError as exc:
            log.error("%s", exc)
            self._stop_all(graceful=False)
            return 1
        log.info("bucky started: %s", ", ".join(s.spec.title for s in self.slots))
        try:
            return self._loop()
        except HaltError as exc:
            log.error("%s; stopping", exc)
            self._stop_all(graceful=True)
            return 1

    def _loop(self) -> int:
        while True:
            while self.signals:
                sig = self.signals.popleft()
                if sig in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s: stopping", signal.Signals(sig).name)
                    clean = self._stop_all(graceful=True)
                    return 0 if clean else 1
                if sig == signal.SIGQUIT:
                    log.info("received SIGQUIT: stopping at once")
                    self._stop_all(graceful=False)
                    return 0
                if sig == signal.SIGHUP:
                    self.handle_hup()
            now = time.monotonic()
            waitables: list[Any] = [self._wakeup_r]
            timeout = 1.0
            for slot in self.slots:
                if slot.process is not None and slot.process.is_alive():
                    waitables.append(slot.process.sentinel)
                elif slot.restart_at is not None:
                    timeout = min(timeout, max(slot.restart_at - now, 0.0))
            wait(waitables, timeout)
            self._drain_wakeup()
            self._reap_and_restart()

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.process
            if proc is not None and not proc.is_alive() and slot.restart_at is None:
                proc.join(0.1)
                code = proc.exitcode
                slot.deaths.append(now)
                while slot.deaths and now - slot.deaths[0] > RESTART_WINDOW:
                    slot.deaths.popleft()
                if len(slot.deaths) > MAX_RESTARTS:
                    raise HaltError(f"{slot.spec.title} keeps dying ({len(slot.deaths)} times in "
                                    f"{RESTART_WINDOW:.0f} s, last exit code {code})")
                delay = min(0.5 * 2 ** (len(slot.deaths) - 1), 30.0)
                log.error("%s died unexpectedly (exit code %s); restarting in %.1f s",
                          slot.spec.title, code, delay)
                slot.restart_at = now + delay
            if slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot)
                self._await_boot([slot])
                log.info("%s restarted", slot.spec.title)

    # -- stopping ------------------------------------------------------------------------------
    def _stop_stage(self, slots: list[Slot], sig: int) -> tuple[bool, dict[str, Any]]:
        timeout = self.cfg.process_join_timeout
        states: dict[str, Any] = {}
        live = [s for s in slots if s.process is not None and s.process.is_alive()]
        for slot in live:
            slot.stopping = True
            try:
                os.kill(slot.process.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        clean = True
        for slot in live:
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
            elif slot.process.exitcode != 0:
                clean = False
            msg = self._recv(slot)
            if msg and msg[0] == "state":
                states[slot.spec.title] = msg[1]
        for slot in slots:
            slot.restart_at = None
        return clean, states

    def _stop_all(self, graceful: bool) -> bool:
        clean = True
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        for stage in (0, 1, 2):
            ok, _ = self._stop_stage([s for s in self.slots if s.stage == stage], sig)
            clean = clean and ok
        for slot in self.slots:
            slot.process = None
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        return clean

    # -- reload --------------------------------------------------------------------------------
    def handle_hup(self) -> None:
        log.info("received SIGHUP: reloading %s", self.config_path or "the configuration")
        try:
            new_cfg, warnings = config_mod.load(self.config_path, self.cli_overrides)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        for warning in warnings:
            log.warning("%s", warning)
        assert self.sockets is not None
        try:
            new_socks = bind_all(new_cfg, reuse=self.sockets, old_plan=self.plan)
        except BindError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        # Inputs hand their state (gauges, rate state, pending aggregates) to their successors;
        # the processor drains what is in flight. Outputs keep running (with what they buffer)
        # unless their own options or the shape of the pipeline changed.
        keep = self._outputs_unchanged(new_cfg, new_socks)
        _, states = self._stop_stage([s for s in self.slots if s.stage == 0], signal.SIGHUP)
        self._stop_stage([s for s in self.slots if s.stage == 1], signal.SIGTERM)
        kept_outputs = [s for s in self.slots if s.stage == 2] if keep else None
        if not keep:
            self._stop_stage([s for s in self.slots if s.stage == 2], signal.SIGTERM)
            for ch in self.channels:
                ch.close()
            self.channels.clear()
        old = self.sockets
        for key, group in old.udp.items():
            if new_socks.udp.get(key) is not group:
                for s in group:
                    s.close()
        for key, s in old.tcp.items():
            if new_socks.tcp.get(key) is not s:
                s.close()
        self.sockets, self.plan, self.cfg = new_socks, _socket_plan(new_cfg), new_cfg
        self.slots = self._build_slots(new_cfg, states, keep_outputs=kept_outputs)
        fresh = [s for s in self.slots if not (kept_outputs and s in kept_outputs)]
        for slot in fresh:
            self._spawn(slot)
        self._await_boot(fresh)
        log.info("configuration reloaded%s", " (outputs kept running)" if kept_outputs else "")

    def _outputs_unchanged(self, new_cfg: Any, new_socks: Sockets) -> bool:
        def output_options(cfg: Any) -> dict[str, Any]:
            return {name: getattr(cfg, name) for name in config_mod.OPTION_BY_NAME
                    if name.startswith(_OUTPUT_OPTION_PREFIXES) or name in _OUTPUT_OPTIONS}

        def shape(cfg: Any, socks: Sockets) -> tuple:
            inputs = tuple((name, len(group)) for name, group in socks.udp.items())
            return inputs, cfg.processor is None, bool(cfg.collectd_python_config)

        return (output_options(new_cfg) == output_options(self.cfg)
                and shape(new_cfg, new_socks) == shape(self.cfg, self.sockets))
