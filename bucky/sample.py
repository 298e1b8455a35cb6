"""The record that crosses process boundaries: the sample, and the kinds of its host slot.

A sample is the 4-tuple (host, name, value, timestamp): the argument order of Bucky 2's processor
API. On a channel a batch is a plain `list` of plain tuples (a NamedTuple costs about 3x more to
carry); the other messages on a channel: bucky.messages.

The host slot says how the output makes the sample's Graphite path (bucky.names):
- a host name (str, collectd and MetricsD): the name rules apply, with the host's reversed labels;
- None: no host; the name rules apply to the name alone (StatsD, self-metrics);
- GRAPHITE_PATH: the name *is* the finished Graphite path and no name rule may touch it (the
  carbon input: what a Graphite client sent is already the path it wants). It is `True`, not a
  string, so it can never be mistaken for a host, costs one byte in a batch and is tested with
  `host is GRAPHITE_PATH`. A processor keeps a path untouched by returning this host.
"""

from __future__ import annotations

Sample = tuple  # (host: str | None | GRAPHITE_PATH, name: str, value: int | float, timestamp)

GRAPHITE_PATH = True
