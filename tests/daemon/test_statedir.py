"""bucky.daemon.statedir: trials leave nothing behind; checks run as the user the daemon becomes."""

import os
import pwd

import pytest

from bucky.config import make_config
from bucky.daemon import statedir


def test_a_trial_removes_exactly_what_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "a" / "b"
    with statedir.trial_directories(str(target)) as created:
        assert target.is_dir()
        assert created == [str(tmp_path / "kept" / "a"), str(target)]
        (tmp_path / "kept" / "mine").write_text("x")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["mine"]


def test_missing_folders_are_what_mkdir_p_would_make_outermost_first(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "file").write_text("x")
    assert statedir.missing_folders(str(tmp_path / "kept" / "a" / "b")) == [
        str(tmp_path / "kept" / "a"), str(tmp_path / "kept" / "a" / "b")]
    assert statedir.missing_folders(str(tmp_path / "kept")) == []
    assert statedir.missing_folders(str(tmp_path / "file")) == []  # exists: not a folder to make


def test_a_trial_on_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError), statedir.trial_directories(str(tmp_path / "f")):
        pass


def test_checks_run_here_when_the_daemon_stays_who_it_is():
    cfg = make_config()
    assert statedir.daemon_identity(cfg) is None
    assert statedir.as_daemon_user(cfg, lambda: f"pid {os.getpid()}") == f"pid {os.getpid()}"


def test_a_user_this_process_cannot_become_is_not_probed(monkeypatch):
    """--check by a non-root user of a config with another `uid`: start-up would refuse the
    switch itself, so the folders are not judged as the wrong user."""
    cfg = make_config(uid=pwd.getpwnam("nobody").pw_uid)
    monkeypatch.setattr(statedir.os, "geteuid", lambda: 4242)
    calls = []
    assert statedir.as_daemon_user(cfg, lambda: calls.append(1) or "problem") is None
    assert calls == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_as_root_the_check_runs_as_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    cfg = make_config(uid="nobody")
    seen = statedir.as_daemon_user(cfg, lambda: f"{os.geteuid()} {os.getegid()}")
    assert seen == f"{nobody.pw_uid} {nobody.pw_gid}"
    assert os.geteuid() == 0  # this process is unchanged
    assert statedir.as_daemon_user(cfg, lambda: None) is None
