"""Test helper: shift the wall clock (time.time, time.time_ns) a process sees.

Put this directory on PYTHONPATH and name a file in BUCKY_TEST_TIME_OFFSET_FILE holding a number
of seconds; every process started with that environment (and every process it forks) reads the
wall clock as the real one plus that offset, re-reading the file at most every 50 ms. The
monotonic clock is left alone, as a real clock step would. (libfaketime is not usable: with
Debian's 0.9.10, Python 3.11's time.sleep fails with EINVAL after a backward step.)
"""

import os
import time

_path = os.environ.get("BUCKY_TEST_TIME_OFFSET_FILE")
if _path:
    _real_time, _real_time_ns, _mono = time.time, time.time_ns, time.monotonic
    _state = [0.0, -1.0]  # offset, monotonic time of the next look at the file

    def _offset() -> float:
        m = _mono()
        if m >= _state[1]:
            _state[1] = m + 0.05
            try:
                with open(_path) as f:
                    _state[0] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return _state[0]

    def _time() -> float:
        return _real_time() + _offset()

    def _time_ns() -> int:
        return _real_time_ns() + int(_offset() * 1e9)

    time.time = _time
    time.time_ns = _time_ns
