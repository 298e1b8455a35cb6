"""Named, immutable records of the collectd network protocol (value lists and notifications).

Shared by the codec (bucky.protocol.collectd), the rate/naming stage, the reader, the sender and
the Python plugin host, so they live apart from any of them.
"""

from __future__ import annotations

from typing import NamedTuple

# Data source types, as on the wire.
COUNTER = 0
GAUGE = 1
DERIVE = 2
ABSOLUTE = 3
DS_TYPE_NAMES = {COUNTER: "counter", GAUGE: "gauge", DERIVE: "derive", ABSOLUTE: "absolute"}

# Notification severities, as on the wire.
FAILURE = 1
WARNING = 2
OKAY = 4
SEVERITY_NAMES = {FAILURE: "failure", WARNING: "warning", OKAY: "okay"}


class ValueList(NamedTuple):
    host: str
    plugin: str
    plugin_instance: str
    type: str
    type_instance: str
    time: float  # seconds since the epoch (time_hr / 2**30 when sent high-resolution)
    interval: float  # seconds
    values: tuple[tuple[int, int | float], ...]  # ((ds_type, value), ...) in wire order
    security: str = "none"  # "none", "sign" or "encrypt": how this record reached us
    username: str = ""  # the user of a verified signature / decrypted part


class Notification(NamedTuple):
    host: str
    plugin: str
    plugin_instance: str
    type: str
    type_instance: str
    time: float
    severity: int
    message: str
    security: str = "none"
    username: str = ""
