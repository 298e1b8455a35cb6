"""The benchmarks still run against the code they measure (a broken bench/ is found here, not
on the day someone needs its figures). Small loads only: nothing here is timed or compared."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from buckyproc import ROOT

pytestmark = pytest.mark.integration


def run_bench(*args: str, timeout: float = 120) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_pipeline_bench_delivers_every_sample() -> None:
    out = run_bench("bench/pipeline.py", "--samples", "50000")
    assert "50,000 of 50,000 samples" in out, out


def test_udp_load_statsd_bench_ends_while_statsd_keeps_flushing() -> None:
    # StatsD writes its own statistics every flush: the bench must still see the load settle
    # (it used to wait for a silence that never came, then report 120 s of idle CPU).
    out = run_bench("bench/udp_load.py", "statsd", "--rate", "20000", "--per-datagram", "20",
                    "--seconds", "1", timeout=60)
    match = re.search(r"offered .* \(([\d,]+)\); delivered ([\d,]+)", out)
    assert match, out
    assert int(match[2].replace(",", "")) > 0
