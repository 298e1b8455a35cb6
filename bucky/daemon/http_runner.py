"""The http process's loop: feeds the status server (bucky.http) from its channels.

The messages (PROCS from the supervisor; STATUS, TAP and SELF_METRICS from the outputs, formats
in bucky/http/state.py) go into a StatusState under the app's lock, which is also ticked every
loop (its history of the relay's own figures takes a point when one is due); the StatusServer
(bucky.http.server) answers requests in its own threads from that state. Old series are expired
every EXPIRE_EVERY seconds. Stopping: the server is shut down; nothing is handed on (the status
page is not on the data path).
"""

from __future__ import annotations

import threading
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from bucky.daemon.runner_loop import Flags, Runner
from bucky.daemon.selfmetrics import prefix_from_config
from bucky.http.server import StatusApp, StatusServer
from bucky.http.state import StatusState
from bucky.names import NameRules

if TYPE_CHECKING:
    from bucky.daemon.children import ChildSpec

EXPIRE_EVERY = 5.0
_WAIT = 0.2


class HttpRunner(Runner):
    def __init__(self, spec: ChildSpec, flags: Flags) -> None:
        super().__init__(spec, flags)
        cfg = spec.cfg
        self.readers = [ch.reader() for ch in spec.in_channels]
        self.handlers = {}  # every message goes to the StatusState, which decodes and counts
        rules = NameRules.from_config(cfg)
        self.state = StatusState(prefix_from_config(cfg), cfg.http_history_seconds,
                                 rules.statname, degraded_status=cfg.http_degraded_status)
        self.app = StatusApp(self.state)
        listener = dict(spec.streams).get("http")
        if listener is None:
            raise RuntimeError("the http process needs its listening socket")
        self.server = StatusServer(listener, self.app)
        self.next_expire = 0.0

    def run(self) -> Any:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="http-server", daemon=True)
        thread.start()
        self.next_expire = time.monotonic() + EXPIRE_EVERY
        return super().run()

    def step(self) -> None:
        state, lock = self.state, self.app.lock
        for reader in wait(self.readers, _WAIT):
            msgs = reader.read()  # type: ignore[union-attr]
            if msgs:
                now = time.time()
                with lock:
                    for msg in msgs:
                        state.handle(msg, now)
        with lock:
            state.tick(time.time())  # the relay's own history, when a point is due
        mono = time.monotonic()
        if mono >= self.next_expire:
            self.next_expire = mono + EXPIRE_EVERY
            with lock:
                state.expire(time.time())

    def finish(self) -> Any:
        self.server.shutdown()
        return None
