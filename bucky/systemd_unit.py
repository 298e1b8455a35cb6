"""`bucky --print-systemd-unit [CONFIG]`: a systemd unit for this installation and this config.

A pip install puts `bucky` wherever its environment's scripts go (/usr/local/bin, a virtualenv),
and a config may keep state or the disk spool outside /var/lib/bucky, which ProtectSystem=strict
would make read-only. So the unit is generated: ExecStart= names the bucky that runs the command
(its console script, or `python -m bucky` with the interpreter's full path), and ReadWritePaths=
lists the folders outside the StateDirectory the config writes to.

contrib/systemd/bucky.service is this unit for /usr/local/bin/bucky (Debian's pip) and
/etc/bucky/config.py with the default folders; a test keeps the two equal.
"""

from __future__ import annotations

import os
import shutil
import sys

from bucky.config import Config

STATE_DIRECTORY = "/var/lib/bucky"  # StateDirectory=bucky: systemd makes it, writable
SHIPPED_COMMAND = "/usr/local/bin/bucky"
SHIPPED_CONFIG = "/etc/bucky/config.py"

_HEADER = """\
# systemd unit for Bucky, made by `bucky --print-systemd-unit{config_shown}`.
# Make yours the same way (it fills in where bucky is installed and the folders it writes to):
#   bucky --print-systemd-unit /etc/bucky/config.py > /etc/systemd/system/bucky.service
# Then create the user (useradd --system --no-create-home bucky), and
# `systemctl daemon-reload && systemctl enable --now bucky`.
#
# Type=notify: Bucky sends READY=1 once every process has started, RELOADING=1/READY=1 around a
# reload and STOPPING=1 (sd_notify); `systemctl status bucky` shows its STATUS= line.
# KillMode=mixed: SIGTERM goes to the supervisor only, which stops its processes in order
# (inputs, processor, outputs: each flushes); whatever is left at the end gets SIGKILL.
# Log lines carry no timestamp of their own here (log_timestamps = "auto" sees JOURNAL_STREAM).
"""

_BODY = """\
[Unit]
Description=Bucky metrics relay (collectd, StatsD, MetricsD to Graphite)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={bucky}{config}
# A config that fails the check makes `systemctl reload` fail, and the running one stays; Bucky
# would refuse it on SIGHUP anyway (one log line), this only makes the refusal visible.
ExecReload={bucky} --check{config}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
KillSignal=SIGTERM
# Three stages of process_join_timeout each (2 s by default), plus outputs flushing to a slow
# carbon: generous, so that an ordered stop is never cut short.
TimeoutStopSec=90
# A plugin host importing plugins may be slow to start (Bucky gives each process 60 s).
TimeoutStartSec=90
Restart=on-failure
RestartSec=2
# Exit status 2 is a configuration error: restarting would not help.
RestartPreventExitStatus=2
User=bucky
Group=bucky
# /var/lib/bucky (Bucky's default `directory`: saved gauges), owned by the service user.
StateDirectory=bucky
# ProtectSystem=strict (below) makes every other folder read-only; those outside /var/lib/bucky
# that the config makes Bucky write (`directory`, `graphite_spool_dir`; create them first,
# owned by the service user):
{read_write_paths}LimitNOFILE=65536
# Hardening that leaves binding, the state directory and the plugin host working. The default
# ports are above 1024; to listen on a lower one, add AmbientCapabilities=CAP_NET_BIND_SERVICE.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def _quoted(word: str) -> str:
    """A word of a systemd command line (systemd.service(5) "Command lines"): % and $ are
    doubled (specifiers, variables), and a word with blanks, quotes or backslashes quoted."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c.isspace() or c in "\"'\\;" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def running_bucky(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """The command that runs this bucky: its console script when that is how it was started,
    else the interpreter's full path with `-m bucky`."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if os.path.basename(argv0) == "bucky":
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found and os.access(found, os.X_OK):
            return [os.path.abspath(found)]
    return [os.path.abspath(executable), "-m", "bucky"]


def writable_folders(cfg: Config) -> list[str]:
    """Folders outside the StateDirectory that Bucky writes with this config."""
    from bucky.daemon.outputs.spooled_buffer import spool_root

    folders: list[str] = []
    wanted = [cfg.directory]
    if cfg.graphite_enabled and cfg.graphite_spool_max_bytes and not cfg.debug:
        wanted.append(spool_root(cfg))
    for folder in wanted:
        folder = os.path.abspath(folder)
        covered = [STATE_DIRECTORY, *folders]
        if not any(folder == c or folder.startswith(c.rstrip("/") + "/") for c in covered):
            folders.append(folder)
    return folders


def render(cfg: Config, config_file: str | None, command: list[str]) -> str:
    """The unit text."""
    config = os.path.abspath(config_file) if config_file else None
    config_arg = f" {_quoted(config)}" if config else ""
    paths = "".join(f"ReadWritePaths={_quoted(folder)}\n" for folder in writable_folders(cfg))
    paths = paths or f"# (none: this config writes only under {STATE_DIRECTORY})\n"
    bucky = " ".join(_quoted(word) for word in command)
    return (_HEADER.format(config_shown=config_arg)
            + _BODY.format(bucky=bucky, config=config_arg, read_write_paths=paths))
