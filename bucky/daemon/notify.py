"""sd_notify: tell the init system (systemd, Type=notify) what the supervisor is doing.

Datagrams of `KEY=value` lines go to the unix socket named by NOTIFY_SOCKET (a leading "@" names
the abstract namespace). READY=1 once every child has booted; RELOADING=1 with MONOTONIC_USEC
when a SIGHUP is taken up and READY=1 once it is done (applied or refused); STOPPING=1 on the way
out; STATUS= a one-line text for `systemctl status`. Without NOTIFY_SOCKET every call does nothing.
A notification is never worth failing for: errors are swallowed (and reported by `send`'s result).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address: str | bytes | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None,
                 unset: bool = True) -> Notifier:
        """From NOTIFY_SOCKET; `unset` removes it so children (and plugins) never inherit it."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) if unset else env.get("NOTIFY_SOCKET")
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self, status: str | None = None) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}",
                         *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
