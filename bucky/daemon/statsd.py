"""Which StatsD handler the daemon runs (bucky.daemon.input_runner.INPUT_HANDLERS["statsd"]), and
the mesh of StatsD workers as the supervisor hands it over.

- `statsd_forward` set: the forwarding proxy (bucky.daemon.outputs.statsd_forward);
- otherwise StatsD worker `index` of `statsd_workers` (bucky.inputs.statsd_workers; 1 = one
  process, as before), given its mesh channels.
"""

from __future__ import annotations

from typing import Any

from bucky.config import Config
from bucky.daemon.outputs.statsd_forward import StatsdProxyInput
from bucky.inputs.base import InputHandler
from bucky.inputs.statsd_workers import StatsdMesh, StatsdWorker


def mesh_from_spec(cfg: Config, mesh: dict) -> StatsdMesh:
    """The supervisor's {"title": t, "out": {title: Channel}, "in": {title: Channel}} (see
    bucky.daemon.plan.statsd_mesh) -> this worker's StatsdMesh."""
    n = int(cfg.statsd_workers)
    titles = [f"statsd.{i + 1}" for i in range(n)]
    index = titles.index(mesh["title"])
    out = [mesh["out"].get(t) if i != index else None for i, t in enumerate(titles)]
    inp = [mesh["in"][t] for i, t in enumerate(titles) if i != index]
    return StatsdMesh(index, n, out, inp)


def make_statsd_input(cfg: Config, sink: Any, state: object = None,
                      mesh: StatsdMesh | dict | None = None) -> InputHandler:
    if cfg.statsd_forward:
        return StatsdProxyInput(cfg, sink, state)
    if isinstance(mesh, dict):
        mesh = mesh_from_spec(cfg, mesh)
    return StatsdWorker(cfg, sink, state, mesh)


# What the factory may build: every one of them keeps the input contract (tests check it).
make_statsd_input.handler_classes = (StatsdWorker, StatsdProxyInput)  # type: ignore[attr-defined]
