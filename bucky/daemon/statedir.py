"""The user the daemon runs as and the folders it writes: `directory` and what lives below it.

What this module is for: start-up creates `directory` (saved gauges, the default spool root) as
the invoking user, hands it to `uid`/`gid`, then switches to them (`prepare_directory`,
`switch_user`); everything below, the spool included, is created after the switch. The preflight
proves, before anything is bound, that those steps will work (`directory_problem`,
`as_daemon_user`), and leaves nothing behind.

Rules:
- A check made "as the daemon user" runs in this process when that is who we already are (no
  `uid`/`gid`, or a reload after the switch), else in a forked child that switches first, exactly
  as start-up does. A user this process cannot become (not root) is not probed: start-up would
  refuse the switch itself ("cannot switch to uid=...").
- A trial creates only what is missing and removes, deepest first, exactly what it created.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
from collections.abc import Callable, Iterator

from bucky.config import Config
from bucky.errors import BuckyError, ConfigError

log = logging.getLogger("bucky")


def daemon_identity(cfg: Config) -> tuple[int, int | None] | None:
    """(uid, gid) start-up switches to, or None when it stays who it is. The gid is the user's
    own group unless `gid` is set; None for a uid without a user entry (`switch_user` refuses
    that rather than keep this process's group)."""
    if cfg.uid is None and cfg.gid is None:
        return None
    uid = cfg.uid if cfg.uid is not None else os.geteuid()
    if cfg.gid is not None:
        return uid, cfg.gid
    try:
        return uid, pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid, None


def check_identity(cfg: Config) -> None:
    """The user to switch to is complete: a `uid` without a user entry needs `gid` too."""
    identity = daemon_identity(cfg)
    if identity is not None and identity[1] is None:
        raise ConfigError(f"{cfg.source}: gid: expected a group for uid {identity[0]}, which has "
                          "no user entry to take one from")


def user_name(uid: int) -> str:
    """"user NAME (uid N)" for messages; "uid N" when the user has no name."""
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def switch_user(cfg: Config) -> None:
    """Switch group (with the user's supplementary groups) and user, in that order."""
    uid, gid = cfg.uid, cfg.gid
    identity = daemon_identity(cfg)
    if identity is None:
        return
    target_gid = identity[1]
    if target_gid is None:
        raise BuckyError(f"cannot switch to uid={uid} gid={gid}: no user has uid {uid}; set gid")
    try:
        if uid is not None:
            try:
                os.initgroups(pwd.getpwuid(uid).pw_name, target_gid)
            except KeyError:
                os.setgroups([target_gid])
        else:
            os.setgroups([target_gid])
        os.setgid(target_gid)
        if uid is not None:
            os.setuid(uid)
    except OSError as exc:
        raise BuckyError(f"cannot switch to uid={uid} gid={gid}: {exc}") from None


def as_daemon_user(cfg: Config, check: Callable[[], str | None]) -> str | None:
    """`check()` (a problem or None) run as the user the daemon will run as; None when this
    process cannot become that user (see the module docstring)."""
    identity = daemon_identity(cfg)
    if identity is None or identity == (os.geteuid(), os.getegid()):
        return check()
    if os.geteuid() != 0:
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: switch, check, report, and never return into the caller's code
        status = 0
        try:
            os.close(read_end)
            switch_user(cfg)
            os.write(write_end, (check() or "").encode()[:16384])
        except BaseException as exc:  # noqa: B036 -- whatever happens, the child must exit here
            what = str(exc) if isinstance(exc, BuckyError) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(BaseException):
                os.write(write_end, what.encode()[:16384])
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace") or None


def missing_folders(path: str) -> list[str]:
    """The folders of `path` (itself included) that do not exist yet, outermost first: what a
    `mkdir -p path` would create."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.lexists(head):
        missing.append(head)
        head = os.path.dirname(head)
    return missing[::-1]


@contextlib.contextmanager
def trial_directories(path: str) -> Iterator[list[str]]:
    """Create `path` and its missing parents (OSError if that fails); yield the folders made;
    remove them again, deepest first, at the end."""
    created: list[str] = []
    try:
        for folder in missing_folders(path):
            os.mkdir(folder)
            created.append(folder)
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        yield created
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def directory_needed(cfg: Config) -> bool:
    """Whether start-up fails without `directory`: saved gauges, or the spool's default root."""
    spool_default = (cfg.graphite_enabled and not cfg.debug and cfg.graphite_spool_max_bytes > 0
                     and not cfg.graphite_spool_dir)
    return bool((cfg.statsd_enabled and cfg.statsd_persistent_gauges) or spool_default)


def directory_problem(cfg: Config, error: OSError) -> str:
    what = "a regular file" if os.path.isfile(cfg.directory) else error.strerror or str(error)
    return (f"{cfg.source}: directory: expected a folder Bucky can create and write, got "
            f"{cfg.directory!r}: {what}")


@contextlib.contextmanager
def trial_directory(cfg: Config) -> Iterator[str | None]:
    """What start-up's `prepare_directory` does, undone at the end: yields the problem (when
    start-up would fail on it) or None. The folder is handed to `uid`/`gid` only when this
    trial made it; one that exists is handed over by start-up (see `handed_over`)."""
    problem = None
    with contextlib.ExitStack() as undo:
        try:
            created = undo.enter_context(trial_directories(cfg.directory))
            if created and daemon_identity(cfg) is not None and os.geteuid() == 0:
                os.chown(cfg.directory, cfg.uid if cfg.uid is not None else -1,
                         cfg.gid if cfg.gid is not None else -1)
        except OSError as exc:
            problem = directory_problem(cfg, exc) if directory_needed(cfg) else None
        yield problem


def handed_over(cfg: Config) -> bool:
    """Whether start-up will chown an existing `directory` to the daemon user (so a folder the
    user cannot write now is theirs by then)."""
    identity = daemon_identity(cfg)
    if identity is None or os.geteuid() != 0 or not os.path.isdir(cfg.directory):
        return False
    st = os.stat(cfg.directory)
    return (cfg.uid is not None and st.st_uid != cfg.uid) or (
        cfg.gid is not None and st.st_gid != cfg.gid)


def prepare_directory(cfg: Config) -> None:
    """Start-up, before the switch: create `directory` and hand it to `uid`/`gid`."""
    try:
        os.makedirs(cfg.directory, exist_ok=True)
        if cfg.uid is not None or cfg.gid is not None:
            os.chown(cfg.directory, cfg.uid if cfg.uid is not None else -1,
                     cfg.gid if cfg.gid is not None else -1)
    except OSError as exc:
        if directory_needed(cfg):  # the preflight found this already, unless the disk changed
            raise BuckyError(directory_problem(cfg, exc)) from None
        log.warning("cannot create directory %s: %s", cfg.directory, exc.strerror)
