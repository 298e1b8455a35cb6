"""contrib/systemd/bucky.service: what the README promises about it, and systemd's own check."""

import subprocess
import sys
from pathlib import Path

from peers import executable

from bucky.config import OPTION_BY_NAME

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "bucky.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_says_what_the_readme_promises():
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["KillMode"] == ["mixed"]  # SIGTERM to the supervisor only: the ordered stop
    assert "/bin/kill -HUP $MAINPID" in s["ExecReload"]
    assert any("--check" in cmd for cmd in s["ExecReload"])
    # Generous: every stage's process_join_timeout, many times over.
    assert int(s["TimeoutStopSec"][0]) >= 10 * 3 * OPTION_BY_NAME["process_join_timeout"].default
    assert int(s["TimeoutStartSec"][0]) > 60  # BOOT_TIMEOUT of a child
    assert s["RestartPreventExitStatus"] == ["2"]  # config errors
    # The state directory is Bucky's default `directory`.
    assert "/var/lib/" + s["StateDirectory"][0] == OPTION_BY_NAME["directory"].default
    assert "AF_INET6" in s["RestrictAddressFamilies"][0]
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0]  # sd_notify


def test_systemd_analyze_verify(tmp_path):
    analyze = executable("systemd-analyze", "systemd")
    unit = tmp_path / "bucky.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/bucky", sys.executable)
                    .replace("User=bucky", "User=root").replace("Group=bucky", "Group=root"))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    problems = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(unit))]
    assert proc.returncode == 0 and not problems, proc.stderr
