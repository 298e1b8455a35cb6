"""The README's status-server and self-metrics sections say what the code does.

Every self-metric counter named in the code is listed in the README's "Self-metrics" table (a
`kind.<reason>` row covers the names built from a reason), the bounds quoted are the constants,
and the page's screenshot exists."""

from __future__ import annotations

import re

from buckyproc import ROOT

from bucky.daemon import http_feed as feed
from bucky.http import server, state

README = (ROOT / "README.rst").read_text()


def section(title: str) -> str:
    """From the section's title to the next title underlined with '='."""
    titles = [m for m in re.finditer(r"^([^=\s].*)\n(=+)$", README, re.M)
              if len(m.group(1)) == len(m.group(2))]
    for m, nxt in zip(titles, titles[1:] + [None], strict=True):
        if m.group(1) == title:
            return README[m.start(): nxt.start() if nxt else len(README)]
    raise AssertionError(f"no section {title!r}")


def code_counters() -> tuple[set[str], set[str]]:
    """(literal counter names, kinds of names built as "kind." + something)."""
    literal, kinds = set(), set()
    for path in (ROOT / "bucky").rglob("*.py"):
        if "bucky/http/" in str(path) or "bucky/sender/" in str(path):
            continue  # the status server's own (listed as bucky_http_*), the client senders'
        text = path.read_text()
        for m in re.finditer(r'(?:counters|totals)\[f?"([a-z_.{}\[\]0-9]+)"\s*(\+)?', text):
            name = m.group(1)
            if "{" in name or m.group(2):
                kinds.add(name.split("{")[0].rstrip("."))
            else:
                literal.add(name)
        for m in re.finditer(r'_count\(f?"([a-z_.{}\[\]0-9]+)"\)', text):
            name = m.group(1)
            (kinds if "{" in name else literal).add(name.split("{")[0].rstrip("."))
    return literal, kinds


def test_every_self_metric_is_listed() -> None:
    table = section("Self-metrics")
    listed = set(re.findall(r"``([a-z_.<>]+)``", table))
    literal, kinds = code_counters()
    assert len(literal) > 50  # the scan found the counters
    reasons = {n.split(".<")[0] for n in listed if ".<" in n}
    missing = sorted(n for n in literal if n not in listed
                     and not any(n.startswith(k + ".") for k in reasons))
    assert not missing, f"self-metrics missing from README's Self-metrics table: {missing}"
    missing_kinds = sorted(k for k in kinds if k not in reasons and k + "." not in reasons
                           and not any(n.startswith(k) for n in listed))
    assert not missing_kinds, missing_kinds


def test_bounds_quoted_are_the_constants() -> None:
    text = " ".join(section("Status page, /health and /metrics").split())
    assert f"at most {feed.TAP_BUDGET / feed.TAP_PERIOD:,.0f} samples a second" in text
    assert f"at most {state.MAX_SERIES:,} series" in text
    assert f"{state.MAX_POINTS} points per series" in text
    assert f"at most {state.MAX_SELF_SERIES:,} self-metric names" in text
    assert f"at most {server.MAX_CONNECTIONS} requests at a time" in text
    assert f"{server.REQUEST_TIMEOUT:.0f} s per socket operation" in text
    assert f"{server.REQUEST_DEADLINE:.0f} s per request" in text
    assert f"{server.MAX_REQUEST_BYTES // 1024} KiB of request line and headers" in text
    assert f"(up to {server.MAX_SERIES_PER_REQUEST})" in text
    assert f"the average over the last {state.RATE_WINDOW:.0f} s" in text
    assert f"``http_history_seconds / {state.HISTORY_POINTS}`` seconds" in text
    assert f"(at least {'one' if state.HISTORY_MIN_STEP == 1 else '?'} a second)" in text
    assert (f"at most {state.HISTORY_POINTS} points per line and {state.MAX_HISTORY_LINES} lines"
            in text)


def test_the_screenshot_is_shipped_and_shown() -> None:
    assert ".. image:: docs/status-page.png" in README
    png = (ROOT / "docs" / "status-page.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_health_section_says_what_the_code_does() -> None:
    from bucky.daemon import supervisor

    text = " ".join(section("Health").split())
    for name in state.HEALTH_STATES:
        assert f"``{name}``" in text
    assert f"in the last {state.LOSS_WINDOW:.0f} s" in text
    assert f"for {state.STATUS_STALE:.0f} s" in text
    assert f"given up on in the last {'hour' if state.GIVEN_UP_MEMORY == 3600 else '?'}" in text
    assert "``http_degraded_status = 503``" in text
    processes = " ".join(section("Processes, signals and failures").split())
    assert f"trying again in {supervisor.AUX_RETRY_DELAY:.0f} s" in processes
    assert f"after {supervisor.AUX_RETRY_DELAY / 60:.0f} minutes" in processes
    assert f"at most an {'hour' if supervisor.AUX_RETRY_MAX_DELAY == 3600 else '?'}" in processes
    status_page = " ".join(section("Status page, /health and /metrics").split())
    assert f"beyond {server.MAX_ARRIVING} of them the oldest goes first" in status_page
    reload = README[README.index("\nReload\n"):]
    assert f"with a {supervisor.RELOAD_CHECK_TIMEOUT:.0f} s time limit" in " ".join(
        reload[:3000].split())
