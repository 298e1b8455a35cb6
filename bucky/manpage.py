"""bucky(1): the man page, made from the command line's parser and the config option table.

`bucky --print-man-page` prints it; docs/bucky.1 is that output, shipped in the sdist and
installed to share/man/man1 (setup.py). The OPTIONS section comes from `bucky.cli.build_parser()`
and CONFIGURATION FILE from `bucky.config.OPTIONS` (names, defaults as a config file would spell
them, descriptions), the very objects the program parses and validates with, so the page cannot
describe an option the program lacks or miss one it has; a test keeps docs/bucky.1 equal to the
generated text. Only the prose around them (signals, exit status, files) is written here.

Rules: plain man(7) macros; no date in .TH, so the output is the same on every machine and day.
"""

from __future__ import annotations

import argparse

import bucky
from bucky import config as config_mod

_DESCRIPTION = """\
Bucky receives collectd network\\-plugin packets (plain, signed and encrypted), StatsD lines,
MetricsD packets and Graphite plaintext and pickle (the carbon input), aggregates them, and
sends them to one or more carbon daemons over the plaintext or pickle protocol, keeping what
carbon cannot take yet in memory and in a disk spool.
.PP
.I CONFIG_FILE
is a Python file: its module\\-level names set the options listed under
.BR "CONFIGURATION FILE" .
Command\\-line options override it; without a file the defaults apply. Every input listens on
127.0.0.1 unless configured otherwise.
"""

_TRAILER = """\
.SH SIGNALS
.TP
.B SIGHUP
Re\\-read the configuration file and apply it without losing data; a configuration that fails
the checks is refused (one log line) and the running one stays.
.TP
.BR SIGTERM ", " SIGINT
Stop in order: inputs, processor, outputs; each flushes what it holds.
.TP
.B SIGQUIT
Stop at once.
.SH EXIT STATUS
.TP
.B 0
Stopped on request, or
.B \\-\\-check
found the configuration valid.
.TP
.B 1
A runtime error: a port in use, a privilege switch that failed, an ordered stop cut short.
.TP
.B 2
A configuration error (the one line printed names the file, the option and the value).
.SH FILES
.TP
.I /var/lib/bucky
The default state directory
.RB ( directory ):
saved gauges and the disk spool of each Graphite destination.
.SH SEE ALSO
.BR bucky\\-dump " " (\\-\\-help),
.BR bucky\\-send " " (\\-\\-help),
.BR collectd.conf (5),
.BR carbon\\-c\\-relay (1);
README.rst of the Bucky distribution for the full reference.
"""


def _text(text: str) -> str:
    """Running text for roff: backslashes and dashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:  # as argparse expands it
        text = text % {**vars(action), "prog": parser.prog}
    return text


def _option_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # noqa: SLF001 (argparse offers no public list)
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{_text(name)}\\fR" for name in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{_text(action.metavar or action.dest.upper())}\\fR"
        else:
            names = f"\\fI{_text(action.metavar or action.dest)}\\fR"
        lines += [".TP", names, _text(_help(parser, action))]
    return lines


def _config_lines() -> list[str]:
    from bucky.cli import _show  # how `bucky --check --verbose` spells values, too

    lines = []
    for option in config_mod.OPTIONS:
        lines += [".TP", f"\\fB{_text(option.name)}\\fR = {_text(_show(option.default))}",
                  _text(option.doc)]
    return lines


def render() -> str:
    """The man page as roff text."""
    from bucky.cli import build_parser

    parser = build_parser()
    summary = (parser.description or "").rstrip(".")
    lines = [
        f'.TH BUCKY 1 "" "bucky {bucky.__version__}" "User Commands"',
        ".SH NAME",
        "bucky \\- " + _text(summary[:1].lower() + summary[1:]),
        ".SH SYNOPSIS",
        ".B bucky",
        "[\\fIOPTIONS\\fR] [\\fICONFIG_FILE\\fR]",
        ".SH DESCRIPTION",
        _DESCRIPTION.rstrip("\n"),
        ".SH OPTIONS",
        *_option_lines(parser),
        ".SH CONFIGURATION FILE",
        "Module\\-level names of the config file; each line gives the default.",
        *_config_lines(),
    ]
    return "\n".join(lines) + "\n" + _TRAILER

