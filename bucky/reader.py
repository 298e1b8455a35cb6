"""Receive collectd network datagrams and read them as objects: a Python 3 collectd reader.

Same shape as the reader that ships with collectd (contrib/collectd_network.py: `Reader`,
`Values`, `Notification`), rewritten on Bucky's codec, with IPv6, multicast on both families,
signed and encrypted data, and datagrams up to 64 KiB:

    with Reader("127.0.0.1", 25826) as reader:
        for item in reader.interpret():  # the records of one datagram
            print(item)  # [1237749608] localhost/swap/swap/used [(1, 48082944.0)]

Rules:
- `Reader(host=None)` joins the default IPv4 group 239.192.74.66; a multicast address (IPv4 or
  IPv6, e.g. ff18::efc0:4a42) is joined on `interface` (a name like "lo"; default: the kernel's
  choice, which needs a multicast route); any unicast address is bound; port 0 picks a free port.
- Decoding follows collectd's Listen side (bucky.protocol.collectd): security level 0/None,
  1/Sign or 2/Encrypt, credentials from an AuthFile, re-read when its mtime changes. Rejected
  parts never raise: `decode()` returns them in `errors` and `interpret()` keeps the last
  datagram's in `reader.errors`.
- `Values` is a list of `(ds_type, value)` pairs with the identifier as attributes; the classic
  spellings `plugininstance` and `typeinstance` are aliases of `plugin_instance`/`type_instance`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from bucky.authfile import AuthFile
from bucky.daemon.sockets import join_multicast
from bucky.protocol import collectd as codec
from bucky.protocol.collectd_records import DS_TYPE_NAMES, SEVERITY_NAMES
from bucky.protocol.collectd_records import Notification as NotificationRecord
from bucky.protocol.collectd_records import ValueList as ValueListRecord
from bucky.protocol.collectd_security import parse_security_level

__all__ = [
    "DEFAULT_IPV4_GROUP",
    "DEFAULT_IPV6_GROUP",
    "DEFAULT_PORT",
    "Decoder",
    "Notification",
    "Reader",
    "Values",
    "interpret_record",
    "parse_security_level",
]

DEFAULT_PORT = 25826
DEFAULT_IPV4_GROUP = "239.192.74.66"
DEFAULT_IPV6_GROUP = "ff18::efc0:4a42"
BUFFER_SIZE = 65535  # collectd senders may use MaxPacketSize up to 65535

class Data:
    """What value lists and notifications share: the identifier, the time, how it arrived."""

    def __init__(self, record: ValueListRecord | NotificationRecord) -> None:
        self.host = record.host
        self.plugin = record.plugin
        self.plugin_instance = record.plugin_instance
        self.type = record.type
        self.type_instance = record.type_instance
        self.time = record.time
        self.security = record.security
        self.username = record.username

    # The classic reader's attribute names.
    @property
    def plugininstance(self) -> str:
        return self.plugin_instance

    @property
    def typeinstance(self) -> str:
        return self.type_instance

    @property
    def source(self) -> str:
        """collectd's identifier: host/plugin[-plugin_instance]/type[-type_instance]."""
        plugin = f"{self.plugin}-{self.plugin_instance}" if self.plugin_instance else self.plugin
        type_ = f"{self.type}-{self.type_instance}" if self.type_instance else self.type
        return f"{self.host}/{plugin}/{type_}"

    @property
    def path(self) -> str:
        """The classic reader's spelling: every non-empty part joined by "/"."""
        parts = (self.host, self.plugin, self.plugin_instance, self.type, self.type_instance)
        return "/".join(p for p in parts if p)

    def __str__(self) -> str:
        return f"[{int(self.time)}] {self.path}"


class Values(Data, list):
    """One value list: a list of `(ds_type, value)` pairs, ds_type as on the wire (0..3)."""

    def __init__(self, record: ValueListRecord) -> None:
        Data.__init__(self, record)
        list.__init__(self, record.values)
        self.interval = record.interval

    @property
    def dstypes(self) -> list[int]:
        return [ds_type for ds_type, _ in self]

    @property
    def dstype_names(self) -> list[str]:
        return [DS_TYPE_NAMES[ds_type] for ds_type, _ in self]

    @property
    def values(self) -> list[int | float]:
        return [value for _, value in self]

    def __str__(self) -> str:
        return f"{Data.__str__(self)} {list.__repr__(self)}"

    def __repr__(self) -> str:
        return f"<Values {self}>"


class Notification(Data):
    """One notification; `severity` as on the wire (1 failure, 2 warning, 4 okay)."""

    def __init__(self, record: NotificationRecord) -> None:
        super().__init__(record)
        self.severity = record.severity
        self.message = record.message

    @property
    def severity_name(self) -> str:
        return SEVERITY_NAMES.get(self.severity, str(self.severity))

    def __str__(self) -> str:
        return f"{super().__str__()} [{self.severity_name}] {self.message}"

    def __repr__(self) -> str:
        return f"<Notification {self}>"


def interpret_record(record: ValueListRecord | NotificationRecord) -> Values | Notification:
    if isinstance(record, NotificationRecord):
        return Notification(record)
    return Values(record)


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # A name: use what it resolves to (IPv4 first), so multicast can still be recognised.
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return ipaddress.ip_address(infos[0][4][0])


class Decoder:
    """Decodes datagrams the way a collectd Listen block with these settings would.

    Kept apart from the socket so captures can be decoded without binding one (bucky-dump).
    """

    def __init__(
        self,
        security_level: int | str = 0,
        auth_file: str | os.PathLike[str] | None = None,
        credentials: Mapping[str, bytes] | None = None,
    ) -> None:
        self.security_level = parse_security_level(security_level)
        # Checked before every datagram, as collectd's own fbhash does.
        self._auth_file = (AuthFile(os.fspath(auth_file), check_every=0.0)
                           if auth_file is not None else None)
        self._credentials = dict(credentials) if credentials is not None else None
        if self.security_level and self._auth_file is None and self._credentials is None:
            # collectd refuses this configuration too: nothing could ever be accepted.
            raise ValueError("security level Sign or Encrypt needs an auth file")
        # Why parts of the last interpreted datagram were rejected (ProtocolError each).
        self.errors: list[Exception] = []

    def decode(self, datagram: bytes) -> codec.Decoded:
        """The records (ValueList/Notification tuples) and errors of one datagram."""
        credentials = (
            self._current_credentials() if self._auth_file is not None else self._credentials
        )
        return codec.decode(datagram, self.security_level, credentials)

    def _current_credentials(self) -> dict[str, bytes]:
        assert self._auth_file is not None
        try:
            self._auth_file.refresh(time.monotonic())
        except (OSError, ValueError):
            pass  # being replaced or gone for a moment: keep the credentials read last
        return self._auth_file.credentials

    def interpret(self, datagram: bytes) -> Iterator[Values | Notification]:
        """`Values` and `Notification` objects of one datagram; its errors go to `errors`."""
        decoded = self.decode(datagram)
        self.errors = list(decoded.errors)
        return (interpret_record(record) for record in decoded.records)


class Reader:
    """A UDP socket receiving collectd datagrams, and their decoding.

    `host`: address to bind (None: the default IPv4 multicast group); `multicast`: join the group
    (None: when `host` is a multicast address); `interface`: the interface name to join on;
    `security_level`: 0/None, 1/Sign, 2/Encrypt; `auth_file` (a path) or `credentials` (a mapping
    user -> password bytes) for signed/encrypted data.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = DEFAULT_PORT,
        multicast: bool | None = None,
        security_level: int | str = 0,
        auth_file: str | os.PathLike[str] | None = None,
        *,
        interface: str | None = None,
        credentials: Mapping[str, bytes] | None = None,
    ) -> None:
        self.decoder = Decoder(security_level, auth_file, credentials)
        self.host = DEFAULT_IPV4_GROUP if host is None else host
        address = _ip_address(self.host)
        self.multicast = address.is_multicast if multicast is None else multicast
        self.interface = interface
        self.last_address: Any = None  # the sender of the last datagram received
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._bind_and_join(address, int(port))
        except BaseException:
            self.socket.close()
            raise
        self.port = self.socket.getsockname()[1]

    def _bind_and_join(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
    ) -> None:
        sock = self.socket
        ifindex = socket.if_nametoindex(self.interface) if self.interface else 0
        if self.multicast:
            # Several readers (or a collectd) may listen to the same group on one host.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.version == 6:
            sock.bind((str(address), port, 0, ifindex if address.is_link_local else 0))
        else:
            sock.bind((str(address), port))
        if not self.multicast:
            return
        try:
            join_multicast(sock, str(address), [ifindex])
        except OSError as err:
            where = f"interface {self.interface}" if self.interface else "the default interface"
            raise OSError(
                err.errno,
                f"cannot join multicast group {address} on {where}: {err.strerror}"
                " (no multicast route? pass interface=)",
            ) from err

    # -- the classic reader's API -----------------------------------------------------------

    def receive(self, timeout: float | None = None) -> bytes:
        """One datagram (blocks; with `timeout` raises TimeoutError when none arrives)."""
        self.socket.settimeout(timeout)
        data, self.last_address = self.socket.recvfrom(BUFFER_SIZE)
        return data

    def decode(self, datagram: bytes | None = None) -> codec.Decoded:
        """The records and errors of `datagram` (received first when None)."""
        return self.decoder.decode(self.receive() if datagram is None else datagram)

    def interpret(self, datagram: bytes | None = None) -> Iterator[Values | Notification]:
        """`Values` and `Notification` objects of `datagram` (received first when None)."""
        return self.decoder.interpret(self.receive() if datagram is None else datagram)

    @property
    def security_level(self) -> int:
        return self.decoder.security_level

    @property
    def errors(self) -> list[Exception]:
        """Why parts of the last interpreted datagram were rejected."""
        return self.decoder.errors

    # -- resource handling --------------------------------------------------------------------

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
