"""The classic `collectd` module's basic example, ported to Python 3 and Bucky's sender.

Records a counter, a random stat and coin flips (per side and in total); every INTERVAL seconds
the sums reach collectd as `any/gauge-some_category-some_counter`, `gauge-coin_stats-heads-flips`,
`gauge-coin_stats-flips`, ... The only change a classic program needs is the import line.

    python examples/basic.py [HOST [PORT [INTERVAL [SECONDS]]]]

Settings come from the arguments or the environment (COLLECTD_HOST, COLLECTD_PORT,
COLLECTD_INTERVAL, EXAMPLE_SECONDS; COLLECTD_SECURITY_LEVEL, COLLECTD_USERNAME, COLLECTD_PASSWORD
to sign or encrypt). Without SECONDS it runs until interrupted, like the original; with it, it stops
after that long, lets the exit hook send the rest, and prints what it recorded as one JSON line.
"""

import json
import os
import random
import sys
import time

from bucky.sender import collectd


def setting(position, env_name, default):
    if len(sys.argv) > position:
        return sys.argv[position]
    return os.environ.get(env_name, default)


def main():
    host = setting(1, "COLLECTD_HOST", "localhost")
    port = int(setting(2, "COLLECTD_PORT", "25826"))
    interval = float(setting(3, "COLLECTD_INTERVAL", "10"))
    seconds = setting(4, "EXAMPLE_SECONDS", None)
    deadline = None if seconds is None else time.monotonic() + float(seconds)

    collectd.SEND_INTERVAL = interval  # read by start_threads(), as in the classic module
    collectd.start_threads()
    conn = collectd.Connection(
        collectd_host=host,
        collectd_port=port,
        security_level=os.environ.get("COLLECTD_SECURITY_LEVEL", "none"),
        username=os.environ.get("COLLECTD_USERNAME"),
        password=os.environ.get("COLLECTD_PASSWORD"),
    )

    recorded = {"some_counter": 0, "another_stat": 0.0, "heads": 0, "tails": 0}
    while deadline is None or time.monotonic() < deadline:
        another = random.random()
        conn.some_category.record(some_counter=1, another_stat=another)
        side = "heads" if random.randrange(2) else "tails"
        conn.coin_stats.record(side, flips=1)
        recorded["some_counter"] += 1
        recorded["another_stat"] += another
        recorded[side] += 1
        # The original slept 1-4 s against a 10 s interval; keep that proportion.
        time.sleep(random.randint(1, 4) * interval / 10)
    print(json.dumps(recorded), flush=True)
    # Leaving main is enough: the exit hook sends what was recorded since the last interval.


if __name__ == "__main__":
    main()
