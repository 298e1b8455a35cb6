"""What runs inside each child process: the entry point, and what the supervisor hands a child.

A child gets a `ChildSpec` (built by the supervisor; nothing in it has touched the process yet),
builds the runner of its role (RUNNERS: bucky.daemon.input_runner, processor_runner,
output_runner, http_runner, all on the loop of bucky.daemon.runner_loop), reports ("ready",) or
("error", message) on its control pipe, then runs until told to stop; on a reload it sends
("state", state) back before it exits; one that crashes says ("crashed", why) first (the
supervisor's log names the cause). Exit codes: 0 done, 3 could not start, 4 crashed.
A child whose supervisor vanished stops by itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from bucky.config import Config
from bucky.daemon.channels import Channel
from bucky.daemon.input_runner import InputRunner
from bucky.daemon.output_runner import OutputRunner
from bucky.daemon.processor_runner import ProcessorRunner
from bucky.daemon.runner_loop import Flags, Runner
from bucky.errors import BuckyError

log = logging.getLogger("bucky")


@dataclasses.dataclass
class ChildSpec:
    role: str  # "input", "processor", "output" or "http"
    kind: str  # input kind ("statsd", ...), "processor", or the output's name
    title: str  # process title suffix and self-metric process name, e.g. "collectd.1"
    cfg: Config
    index: int = 0  # which output, for role "output"
    udp: list[socket.socket] = dataclasses.field(default_factory=list)
    # TCP listeners, (stream kind, listener): an input's open_stream(kind), the http server's
    # "http" listener.
    streams: list[tuple[str, socket.socket]] = dataclasses.field(default_factory=list)
    in_channels: list[Channel] = dataclasses.field(default_factory=list)
    out_channels: list[Channel] = dataclasses.field(default_factory=list)  # outputs: to http
    record_channels: list[Channel] = dataclasses.field(default_factory=list)
    state: Any = None
    mesh: Any = None  # StatsD workers: channels to and from the other workers (bucky.daemon.statsd)
    ctrl: Connection | None = None
    parent_pid: int = 0


def _http_runner(spec: ChildSpec, flags: Flags) -> Runner:
    from bucky.daemon.http_runner import HttpRunner  # only the http process loads bucky.http

    return HttpRunner(spec, flags)


RUNNERS: dict[str, Callable[[ChildSpec, Flags], Runner]] = {
    "input": InputRunner, "processor": ProcessorRunner, "output": OutputRunner,
    "http": _http_runner,
}


def child_main(spec: ChildSpec) -> None:
    """Entry point of every child process."""
    flags = Flags()
    flags.install()
    try:
        import setproctitle

        setproctitle.setproctitle(f"bucky: {spec.title}")
    except Exception:  # a title is a nicety; never a reason not to run
        pass
    ctrl = spec.ctrl
    assert ctrl is not None
    try:
        runner = RUNNERS[spec.role](spec, flags)
    except BuckyError as exc:
        ctrl.send(("error", str(exc)))
        os._exit(3)
    except Exception as exc:
        log.exception("%s failed to start", spec.title)
        ctrl.send(("error", f"{exc.__class__.__name__}: {exc}"))
        os._exit(3)
    ctrl.send(("ready",))
    try:
        state = runner.run()
        if flags.reload:
            ctrl.send(("state", state))
    except Exception as exc:
        log.exception("%s crashed", spec.title)
        try:  # the supervisor names the cause when it restarts (or gives up on) this child
            ctrl.send(("crashed", f"{exc.__class__.__name__}: {exc}"[:500]))
        except Exception:
            pass
        sys.stderr.flush()
        os._exit(4)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
