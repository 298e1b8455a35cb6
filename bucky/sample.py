"""Records that cross process boundaries, and the queue message kinds.

A sample is the 4-tuple (host, name, value, timestamp): the argument order of Bucky 2's processor
API. `host` is None when the name is already complete (StatsD, MetricsD without host, self-metrics).
`host` is GRAPHITE_PATH when the name is a finished Graphite path that no name rule may touch
(the carbon input: what a Graphite client sent is already the path it wants).
On a queue a batch is a plain `list` of plain tuples (a NamedTuple costs about 3x more to carry);
anything on a queue that is not a list is a control message, a tuple whose first item names it.
"""

from __future__ import annotations

Sample = tuple  # (host: str | None, name: str, value: int | float, timestamp: int | float)

# The `host` of a sample whose name is a finished Graphite path (bucky.names passes it through).
# NUL can never be part of a real host: collectd strings end at NUL, StatsD has no host.
GRAPHITE_PATH = "\x00graphite"

# Control messages travel in-band on the sample queues, after the data they follow.
NOTIFICATION = "notification"  # ("notification", Notification-record): a collectd notification
