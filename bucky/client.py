"""Base class for custom output clients, compatible with Bucky 2's `bucky.client.Client`.

A config lists classes in `custom_clients`; each gets its own output process, where Bucky builds
one instance as `cls(cfg, None)` and calls `send(host, name, value, timestamp)` for every sample
(raw host and name: no Graphite name rules), `notify(notification)` for collectd notifications,
`tick()` about once a second and `close()` at shutdown. Exceptions are counted and logged; they
never stop the relay.

Differences from Bucky 2, where Client was a multiprocessing.Process reading a pipe: the process
and its loop belong to Bucky now, so `run()`/`start()` are not called and `pipe` is always None.
A Bucky 2 subclass that calls `super().__init__(pipe)` still works (cfg is then None on the base;
the subclass keeps its own reference, as Bucky 2 subclasses did).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucky.config import Config


class Client:
    def __init__(self, cfg: Config | None = None, pipe: Any = None) -> None:
        self.cfg = cfg
        self.pipe = pipe

    def send(self, host: str | None, name: str, value: float, timestamp: float,
             metadata: Any = None) -> None:
        """One sample. Override this."""
        raise NotImplementedError(f"{type(self).__name__}.send() is not implemented")

    def notify(self, notification: Any) -> None:
        """A collectd Notification record (bucky.protocol.collectd_records); ignored by default."""

    def tick(self) -> None:
        """Called about once a second: flush buffers, reconnect, ..."""

    def close(self) -> None:
        """Called once at shutdown."""
