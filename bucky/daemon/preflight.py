"""The one preflight: everything that could refuse a config, run by `--check`, start-up and reload.

What this module is for: `preflight(cfg)` takes a Config whose option values are already checked
(bucky.config) and returns the daemon's plan, or raises ConfigError, one line:
"<config file>: <option>: <what is wrong>". `bucky --check` prints the plan; start-up runs it
before binding anything (so a finding exits 2 and names the option); SIGHUP runs it on the new
config before touching the running children. One function for the three, so they cannot
disagree.

Rules: this module only orchestrates, in the order start-up meets the problems. Each component
owns its check (`check(cfg)` beside the code that would otherwise fail at its start):
- inputs: `bucky.inputs.collectd.check` (types.db, converters, auth file),
  `bucky.inputs.python_plugins.check` (the plugin config; modules located, not imported);
- outputs: `bucky.daemon.outputs.check` (each output's settings),
  `bucky.daemon.outputs.spooled_buffer.check` (the spool folder, as the daemon user);
- the user and folders: `bucky.daemon.statedir` (the `uid`/`gid` pair; `directory`, made and
  handed over as start-up does);
- the status server: its code loads now, before privileges are dropped.
A check may touch the disk only to prove start-up would succeed, and removes what it made. The
processor and custom clients were imported by bucky.config. Ports are not probed (nothing is
bound); the plan itself is pure (bucky.daemon.plan).
"""

from __future__ import annotations

from bucky.config import Config
from bucky.daemon import outputs, statedir
from bucky.daemon.outputs import spooled_buffer
from bucky.daemon.plan import DaemonPlan, plan_daemon
from bucky.errors import ConfigError
from bucky.inputs import collectd, python_plugins


def check_components(cfg: Config) -> None:
    """Every component's own check; the first finding is raised (ConfigError)."""
    collectd.check(cfg)
    python_plugins.check(cfg)
    outputs.check(cfg)
    statedir.check_identity(cfg)
    with statedir.trial_directory(cfg) as problem:
        if problem:
            raise ConfigError(problem)
        spooled_buffer.check(cfg)
    if cfg.http_enabled:  # the status server's code and page load here, while they surely can
        import bucky.http.server  # noqa: F401


def preflight(cfg: Config) -> DaemonPlan:
    """Check everything a child would check at its start, then lay out the plan."""
    check_components(cfg)
    return plan_daemon(cfg)
