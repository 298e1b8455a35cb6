"""Benchmark: what one hostile 1 MiB pickle frame costs the carbon input (CPU seconds, peak RSS).

Each case is one frame fed to a fresh CarbonInput in a fresh process (so the peak RSS is the
case's own): half a million references to one bad entry (the pickle memo makes each reference two
bytes), 200,000 distinct bad entries, and half a million references to one good entry.

    python bench/carbon_hostile.py
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = {
    "500k references to one bad entry": lambda: [("a", ("x", 1))] * 500_000,
    "200k distinct bad entries": lambda: list(range(70_000, 270_000)),
    "500k references to one good entry": lambda: [("a.b", (1_700_000_000, 1))] * 500_000,
}


class _NullSink(list):
    wants_records = False

    def extend(self, samples: object) -> None:
        pass


def run_case(name: str) -> str:
    from bucky.inputs.carbon import CarbonInput

    payload = pickle.dumps(CASES[name](), protocol=2)
    carbon = CarbonInput(None, _NullSink())
    stream = carbon.open_stream("pickle", None)
    started = time.process_time()
    stream.feed(struct.pack("!L", len(payload)) + payload, 1.0)
    cpu = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    counted = {k: v for k, v in carbon.counters.items() if k in ("points", "bad_points")}
    return f"{name:36} {len(payload):>9,} bytes  {cpu:5.2f} cpu-s  peak RSS {rss:4} MB  {counted}"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(run_case(sys.argv[2]))
        return
    for name in CASES:
        subprocess.run([sys.executable, __file__, "--case", name], check=True)


if __name__ == "__main__":
    main()
