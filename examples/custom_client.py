"""Example Bucky config with a custom client: receive every sample as Bucky 2 custom clients did.

Run with `bucky examples/custom_client.py`. The class runs inside its own output process; `send`
gets the raw (host, name, value, timestamp) of every sample (before the Graphite name rules), and
`notify` gets collectd notifications. Exceptions are counted and logged, never fatal.
"""

import json
import sys

from bucky.client import Client


class JsonLinesClient(Client):
    """Writes one JSON object per sample to stderr (a stand-in for any other destination)."""

    def __init__(self, cfg, pipe=None):
        super().__init__(cfg, pipe)
        self.out = sys.stderr

    def send(self, host, name, value, timestamp, metadata=None):
        self.out.write(json.dumps({"host": host, "name": name, "value": value,
                                   "timestamp": timestamp}) + "\n")

    def notify(self, notification):
        self.out.write(json.dumps({"notification": notification.message,
                                   "severity": notification.severity}) + "\n")


custom_clients = [JsonLinesClient]
graphite_enabled = False
