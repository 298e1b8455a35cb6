"""The messages Bucky's processes send each other over channels: one vocabulary, one decoder.

A channel (bucky.daemon.channels) carries two shapes of message:

- a batch: a plain `list` of sample tuples (bucky.sample). This is the hot path, so a batch is
  never wrapped: a list on a channel *is* a batch (kind BATCH);
- a control message: a plain `tuple` whose first item names its kind:

  ("self", samples[, gauge names])  SELF_METRICS  Bucky's own metrics, never processed; the names
                                                  that are levels, not changes (status server)
  ("notification", record)          NOTIFICATION  a collectd Notification, to the outputs' notify()
  ("records", value_lists)          RECORDS       decoded collectd records, for the plugin host
  ("procs", {...})                  PROCS         supervisor -> http: which processes run
  ("status", output title, {...})   STATUS        output -> http: a status snapshot
  ("tap", output title, samples)    TAP           output -> http: a sample of what it sent

Control messages travel in-band on the sample channels, after the data they follow. The formats
of PROCS, STATUS and TAP: bucky/http/state.py. `kind_of` is the one decoder every receiver uses;
an unknown message (None) is ignored, and counted where the receiver counts.

Rules: plain builtins only (marshal- and pickle-cheap); this module imports nothing of bucky, so
every layer that sends or reads messages can import it.
"""

from __future__ import annotations

BATCH = "batch"
SELF_METRICS = "self"
NOTIFICATION = "notification"
RECORDS = "records"
PROCS = "procs"
STATUS = "status"
TAP = "tap"


def kind_of(msg: object) -> str | None:
    """BATCH for a batch, the kind of a control message, None for anything else."""
    if type(msg) is list:
        return BATCH
    if type(msg) is tuple and msg and type(msg[0]) is str:
        return msg[0]
    return None


def self_metrics(samples: list[tuple], gauges: list[str] | tuple = ()) -> tuple:
    """A SELF_METRICS message (the gauge names only when there are some)."""
    return (SELF_METRICS, samples, list(gauges)) if gauges else (SELF_METRICS, samples)


def self_metrics_gauges(msg: tuple) -> list[str] | tuple:
    """The gauge names of a SELF_METRICS message (none in older senders' two-item form)."""
    return msg[2] if len(msg) > 2 else ()
