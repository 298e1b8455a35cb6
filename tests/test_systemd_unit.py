"""The systemd unit: contrib/systemd/bucky.service and `bucky --print-systemd-unit`, what the
README promises about them, and systemd's own check (systemd-analyze verify)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from peers import missing

from bucky import systemd_unit
from bucky.config import OPTION_BY_NAME, make_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "systemd" / "bucky.service"


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


def verify(unit_text: str, tmp_path: Path) -> None:
    """systemd-analyze verify, as root (the test machine has no user bucky)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / "bucky.service"
    unit.write_text(unit_text.replace("User=bucky", "User=root").replace("Group=bucky",
                                                                        "Group=root"))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    problems = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(unit))]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_systemd_analyze_verify(tmp_path):
    verify(UNIT.read_text().replace(systemd_unit.SHIPPED_COMMAND, sys.executable), tmp_path)


@pytest.fixture
def real_spool_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is spooled here: the folders are only named, so the real default applies
    (conftest moves it to a per-test folder for clients that write)."""
    monkeypatch.undo()


def test_the_shipped_unit_is_the_generated_one(real_spool_root):
    """contrib/systemd/bucky.service cannot drift from what --print-systemd-unit prints."""
    generated = systemd_unit.render(make_config(), systemd_unit.SHIPPED_CONFIG,
                                    [systemd_unit.SHIPPED_COMMAND])
    assert UNIT.read_text() == generated
    assert "ExecStart=/usr/local/bin/bucky /etc/bucky/config.py" in generated
    assert "ReadWritePaths=" not in generated  # the default folders are the StateDirectory


def test_the_running_bucky_is_named(tmp_path):
    script = tmp_path / "bin" / "bucky"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert systemd_unit.running_bucky(str(script), "/x/python") == [str(script)]
    module = str(Path(systemd_unit.__file__).with_name("__main__.py"))  # python -m bucky
    assert systemd_unit.running_bucky(module, "/x/python") == ["/x/python", "-m", "bucky"]
    script.chmod(0o644)  # not something systemd could run
    assert systemd_unit.running_bucky(str(script), "/x/python") == ["/x/python", "-m", "bucky"]


def test_the_folders_the_config_writes_become_read_write_paths(real_spool_root):
    folders = systemd_unit.writable_folders
    assert folders(make_config()) == []
    assert folders(make_config(directory="/srv/bucky")) == ["/srv/bucky"]  # spool inside it
    assert folders(make_config(directory="/srv/bucky", graphite_spool_dir="/data/spool")) == [
        "/srv/bucky", "/data/spool"]
    assert folders(make_config(graphite_spool_dir="/var/lib/bucky/spool2")) == []
    assert folders(make_config(graphite_spool_dir="/data/spool",
                               graphite_spool_max_bytes=0)) == []  # no spool: not written


def test_print_systemd_unit_names_this_bucky_and_passes_systemd_analyze(tmp_path):
    spool = tmp_path / "spool dir"  # a blank: quoted in the unit
    spool.mkdir()
    config = tmp_path / "config.py"
    config.write_text(f"directory = {str(tmp_path / 'state')!r}\n"
                      f"graphite_spool_dir = {str(spool)!r}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bucky", "--print-systemd-unit", str(config)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"ExecStart={sys.executable} -m bucky {config}" in lines
    assert f"ExecReload={sys.executable} -m bucky --check {config}" in lines
    assert f"ReadWritePaths={tmp_path / 'state'}" in lines
    assert f'ReadWritePaths="{spool}"' in lines
    verify(proc.stdout, tmp_path)
