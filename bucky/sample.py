"""Records that cross process boundaries, and the queue message kinds.

A sample is the 4-tuple (host, name, value, timestamp): the argument order of Bucky 2's processor
API. `host` is None when the name is already complete (StatsD, MetricsD without host, self-metrics).
`host` is GRAPHITE_PATH when the name is a finished Graphite path that no name rule may touch
(the carbon input: what a Graphite client sent is already the path it wants).
On a queue a batch is a plain `list` of plain tuples: pickling NamedTuples costs about 3x more.
Anything on a queue that is not a list is a control message, a tuple whose first item names it.
"""

from __future__ import annotations

from typing import NamedTuple


class Sample(NamedTuple):
    host: str | None
    name: str
    value: float
    timestamp: float


# The `host` of a sample whose name is a finished Graphite path (bucky.names passes it through).
# NUL can never be part of a real host: collectd strings end at NUL, StatsD has no host.
GRAPHITE_PATH = "\x00graphite"

# Control messages travel in-band on the sample queues, after the data they follow.
EOS = "eos"  # ("eos", producer_name): this producer will send nothing more
NOTIFICATION = "notification"  # ("notification", Notification-record): a collectd notification


def is_batch(item: object) -> bool:
    return type(item) is list
