"""Example Bucky config with a processor: filter and rename samples in their own process.

Run with `bucky examples/processor.py`. The processor gets (host, name, value, timestamp) for every
sample, exactly as in Bucky 2, and returns a 4-tuple to keep it (possibly changed) or None to drop
it. If it raises, the sample is kept unless `processor_drop_on_error = True`; errors are counted
(bucky.processor.errors) and logged at most once a minute.
"""

import re

_NOISY = re.compile(r"^(df|interface)\.")


def processor(host, name, value, timestamp):
    if _NOISY.match(name) and value == 0:
        return None  # drop all-zero disk and interface series
    if host and host.endswith(".internal"):
        host = host[: -len(".internal")]
    if name.startswith("stats.timers.") and name.endswith(".upper"):
        name = name[: -len(".upper")] + ".max"
    return host, name, value, timestamp


processor_drop_on_error = False
