"""Config trees: our parser against Debian's collectd 5.12 with its python plugin.

collectd runs a tiny plugin that dumps the Config trees its config callback receives as JSON;
the same blocks go through bucky.plugin_host.confparse and collectd_module.Config; the dumps
must be equal (keys, values with their types, parents, children). Skipped where collectd or
its python plugin is not installed or cannot start.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess

import pytest
from peers import missing

from bucky.plugin_host.collectd_module import Config
from bucky.plugin_host.confparse import parse_text

COLLECTD = "/usr/sbin/collectd"
PYTHON_PLUGIN = "/usr/lib/collectd/python.so"

pytestmark = pytest.mark.integration

MODULE_BLOCKS = [
    "A 1 0x1F 010 08 -.5 +3 1.5e+3 1.5e3 1e5 123abc 1_000",
    "B true false yes no on off True YES Off truex _on",
    'C "q\\"x" "back\\\\slash" "a#b" "tab\\tx" "" "x y"',
    'D "multi \\\n      line" \\\n  2\n  E "raw\nnewline"',
    "F 127.0.0.1 127.0.0.1:2003 10.0.0.256 ::1 [::1]:80 fe80::1 1.2.3",
    'G"glued"1 # comment\n  # a whole line\n  H "not # a comment"',
    "<Sub a 1>\n    X \"y\"\n    <Deeper>\n      Z true\n    </Deeper>\n  </Sub>\n"
    "  <Empty>\n  </Empty>\n  <EmptyWithValue v>\n  </EmptyWithValue>",
    "CRLF 1\r\n  Next \"two\"\r\n",
    "",
]


def dump(config):  # also runs inside collectd: plain Python, no imports
    return {
        "key": config.key,
        "values": [[type(v).__name__, v] for v in config.values],
        "parent": None if config.parent is None else config.parent.key,
        "children": [dump(child) for child in config.children],
    }


PLUGIN = '''
import json
import os
import signal

import collectd

TREES = []


{dump}

def configure(config):
    TREES.append(dump(config))


def init():
    with open({out!r}, "w") as handle:
        json.dump(TREES, handle)
    os.kill(os.getpid(), signal.SIGTERM)


collectd.register_config(configure, name="dump")
collectd.register_init(init)
'''


def conf_text(tmp_path) -> str:
    blocks = "".join(f"  <{'module' if i % 2 else 'Module'} dump>\n  {body}\n  </Module>\n"
                     .replace("</Module>", "</module>" if i % 2 else "</Module>")
                     for i, body in enumerate(MODULE_BLOCKS))
    return (f'Hostname "oracle"\nFQDNLookup false\nBaseDir "{tmp_path}"\n'
            f'PIDFile "{tmp_path}/collectd.pid"\nInterval 60\nLoadPlugin python\n'
            f'<Plugin python>\n  ModulePath "{tmp_path}"\n  Import "bucky_dumpconf"\n'
            f"{blocks}</Plugin>\n")


def test_config_trees_match_collectd(tmp_path) -> None:
    if not (os.access(COLLECTD, os.X_OK) and os.path.exists(PYTHON_PLUGIN)):
        missing("collectd or its python plugin is not installed (Debian: collectd-core)")
    out = tmp_path / "trees.json"
    (tmp_path / "bucky_dumpconf.py").write_text(
        PLUGIN.format(dump=inspect.getsource(dump), out=str(out)))
    text = conf_text(tmp_path)
    (tmp_path / "collectd.conf").write_text(text)
    try:
        run = subprocess.run([COLLECTD, "-f", "-C", str(tmp_path / "collectd.conf")],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("collectd did not stop within 60 s")
    if not out.exists():
        if "python" in run.stderr and ("Could not" in run.stderr or "failed" in run.stderr):
            missing(f"collectd's python plugin cannot start here: {run.stderr[-300:]}")
        pytest.fail(f"collectd wrote no trees (exit {run.returncode}): {run.stderr[-2000:]}")
    theirs = json.loads(out.read_text())

    (plugin,) = [n for n in parse_text(text).children if n.key == "Plugin"]
    ours = [dump(Config.from_node(n)) for n in plugin.children if n.key.lower() == "module"]
    assert len(theirs) == len(MODULE_BLOCKS)
    assert ours == json.loads(json.dumps(ours))  # JSON-safe, like theirs
    for mine, real in zip(ours, theirs, strict=True):
        assert mine == real
