"""The classic `collectd` module's primes example, ported to Python 3 and Bucky's sender.

A producer thread draws random numbers, a consumer thread tests them for primality, and the main
thread reports the queue length. collectd receives `any/gauge-queue-size`,
`gauge-producer-{too_small,too_big,just_right}`, `gauge-consumer-count`,
`gauge-consumer-{prime,composite}-{count,time}`, ...

    python examples/primes.py [HOST [PORT [INTERVAL [SECONDS]]]]

Settings come from the arguments or the environment (COLLECTD_HOST, COLLECTD_PORT,
COLLECTD_INTERVAL, EXAMPLE_SECONDS; COLLECTD_SECURITY_LEVEL, COLLECTD_USERNAME, COLLECTD_PASSWORD
to sign or encrypt). Without SECONDS it runs until interrupted, like the original; with it, it stops
the threads after that long, prints what it recorded as one JSON line and lets the exit hook send
the rest.
"""

import json
import math
import os
import queue
import sys
import threading
import time
from random import normalvariate

from bucky.sender import collectd


def setting(position, env_name, default):
    if len(sys.argv) > position:
        return sys.argv[position]
    return os.environ.get(env_name, default)


HOST = setting(1, "COLLECTD_HOST", "localhost")
PORT = int(setting(2, "COLLECTD_PORT", "25826"))
INTERVAL = float(setting(3, "COLLECTD_INTERVAL", "10"))
SECONDS = setting(4, "EXAMPLE_SECONDS", None)
SCALE = INTERVAL / 10  # the original's sleeps were meant for a 10 s interval

numbers = queue.Queue()
stop = threading.Event()
recorded = {"too_small": 0, "too_big": 0, "just_right": 0, "prime": 0, "composite": 0}
conn = collectd.Connection(
    collectd_host=HOST,
    collectd_port=PORT,
    security_level=os.environ.get("COLLECTD_SECURITY_LEVEL", "none"),
    username=os.environ.get("COLLECTD_USERNAME"),
    password=os.environ.get("COLLECTD_PASSWORD"),
)


def is_prime(n):
    # Trial division up to the square root (the original tried every number below n, which
    # takes minutes for the largest numbers the producer draws).
    return n >= 2 and all(n % i for i in range(2, math.isqrt(n) + 1))


def watch_queue():
    while not stop.wait(1 * SCALE):
        conn.queue.set_exact(size=numbers.qsize())


def consumer():
    while not stop.is_set():
        try:
            n = numbers.get(timeout=0.1)
        except queue.Empty:
            continue
        before = time.time()
        primality = is_prime(n)
        elapsed = time.time() - before
        kind = "prime" if primality else "composite"
        print(n, "is prime" if primality else "is not prime")
        conn.consumer.record(kind, count=1, time=elapsed)
        recorded[kind] += 1


def producer():
    while not stop.wait(0.33 * SCALE):
        try:
            n = int((time.time() % 30) ** normalvariate(5, 2))
        except (ZeroDivisionError, OverflowError):
            n = 0
        if n < 2:
            kind = "too_small"
        elif n > 10**9:
            kind = "too_big"
        else:
            kind = "just_right"
            numbers.put(n)
        conn.producer.record(**{kind: 1})
        recorded[kind] += 1


def main():
    collectd.SEND_INTERVAL = INTERVAL
    collectd.start_threads()
    threads = [threading.Thread(target=func, daemon=True) for func in (producer, consumer)]
    for thread in threads:
        thread.start()
    if SECONDS is not None:
        threading.Timer(float(SECONDS), stop.set).start()
    try:
        watch_queue()
    except KeyboardInterrupt:
        stop.set()
    for thread in threads:
        thread.join()
    print(json.dumps(recorded), flush=True)
    # Leaving main is enough: the exit hook sends what was recorded since the last interval.


if __name__ == "__main__":
    main()
