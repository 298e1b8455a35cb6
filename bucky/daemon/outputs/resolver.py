"""Name resolution for output clients that never blocks the output loop."""

from __future__ import annotations

import socket
import threading


class Resolver:
    """getaddrinfo without blocking the caller: numeric hosts at once, names in a daemon thread.

    A daemon thread (not an executor) so a hung DNS lookup can never hold up process exit. One
    lookup at a time; a caller that finds it still running simply asks again later.
    """

    def __init__(self, host: str, port: int, socktype: int) -> None:
        self.host = host
        self.port = port
        self._socktype = socktype
        self._thread: threading.Thread | None = None
        self._outcome: tuple[list, BaseException | None] | None = None

    def lookup(self) -> list | None:
        """Addresses, or None while a lookup runs; raises OSError when the name does not resolve."""
        if self._thread is not None:
            if self._thread.is_alive():
                return None
            self._thread = None
            outcome, self._outcome = self._outcome, None
            if outcome is not None:
                infos, error = outcome
                if error is not None:
                    raise error
                return infos
        try:
            return socket.getaddrinfo(self.host, self.port, 0, self._socktype, 0,
                                      socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass
        self._thread = threading.Thread(target=self._run, name=f"resolve {self.host}", daemon=True)
        self._thread.start()
        return None

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, self._socktype)
            self._outcome = (infos, None)
        except (OSError, UnicodeError) as exc:
            self._outcome = ([], OSError(f"cannot resolve {self.host!r}: {exc}"))
