"""StatsD state that outlives a worker: reload handover and saved gauges, for N workers.

- Reload: every new worker gets the states of all old workers (bucky.daemon.plan.handover_state:
  `{"statsd-workers": [state, ...]}`, or one StatsdInput state from before workers existed) and
  takes the keys it owns; the own statistics and counters of old worker k go to new worker k
  (old workers beyond the new count: to worker 0), so a change of statsd_workers loses nothing.
- Saved gauges: worker i of N > 1 writes `<statsd_gauges_savefile>.w<i+1>`, N = 1 the file
  itself; at start every worker reads the file and every `.w<k>` file, keeps the keys it owns,
  the newest update winning.

Errors are logged and counted in the input's counters, never raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from bucky.config import Config
from bucky.errors import DecodeError
from bucky.inputs.statsd import StatsdInput, decode_gauges

log = logging.getLogger(__name__)

MAX_GAUGE_FILES = 64
_KEYED_FIELDS = ("counters", "timers", "timer_extra", "gauges", "gauge_updated", "sets")


def gauge_file(base: str, index: int, workers: int) -> str:
    """The saved-gauges file of worker `index` of `workers` (`base`: statsd_gauges_savefile)."""
    return base if workers <= 1 else f"{base}.w{index + 1}"


def predecessor_states(state: object) -> list[dict]:
    """A predecessor's state: one StatsdInput state, or the states of every old worker."""
    if isinstance(state, dict) and "statsd-workers" in state:
        return [s for s in state["statsd-workers"] if isinstance(s, dict)]
    if isinstance(state, dict):
        return [state]
    return []


def owned_part(old: dict, owned: Callable[[str], bool], take_own: bool) -> dict:
    """An aggregator state (export_state()) cut down to the keys `owned` accepts; without
    `take_own`, also without the own statistics and totals (they belong to another worker)."""
    new = dict(old)
    for field in _KEYED_FIELDS:
        new[field] = {k: v for k, v in old[field].items() if owned(k)}
    new["gauges_unsent"] = [k for k in old["gauges_unsent"] if owned(k)]
    if not take_own:
        new["own"] = (0, 0, 0)
        new["totals"] = {}
    return new


def adopt_states(local_input: StatsdInput, states: list[dict], index: int, workers: int,
                 owned: Callable[[str], bool]) -> None:
    """Worker `index` of `workers` takes its share of every old worker's state."""
    for k, state in enumerate(states):
        try:
            take_own = k == index or (index == 0 and k >= workers)
            local_input.adopt_aggregates(owned_part(state["aggregator"], owned, take_own))
            if k == index:
                local_input.counters.update(state.get("counters") or {})
                restored = state.get("restored")
                if restored:
                    local_input.restored_gauges = {key: v for key, v in restored.items()
                                             if owned(key)}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("StatsD: cannot adopt a previous state (%s); going on without it", exc)
            local_input.counters["errors.state"] += 1


def restore_all_gauges(local_input: StatsdInput, cfg: Config, index: int, workers: int,
                       owned: Callable[[str], bool]) -> None:
    """Every gauge file (N = 1's and every worker's), newest update winning, owned keys."""
    base = cfg.statsd_gauges_savefile
    names = [base] + [f"{base}.w{k}" for k in range(1, MAX_GAUGE_FILES + 1)]
    merged: dict[str, tuple[float, float | None]] = dict(local_input.restored_gauges or {})
    for name in names:
        path = os.path.join(cfg.directory, name)
        if name == gauge_file(base, index, workers) or not os.path.exists(path):
            continue  # the local input read (or moved aside) its own file
        try:
            with open(path, "rb") as f:
                gauges, _ = decode_gauges(f.read())
        except (OSError, DecodeError) as exc:
            log.warning("StatsD: cannot read saved gauges %s: %s", path, exc)
            local_input.counters["errors.gauges_load"] += 1
            continue
        for key, (value, updated) in gauges.items():
            old = merged.get(key)
            if old is None or (updated or 0.0) > (old[1] or 0.0):
                merged[key] = (value, updated)
    local_input.restored_gauges = {k: v for k, v in merged.items() if owned(k)} or None
