"""The status page in a real headless browser (Debian chromium + chromedriver, via Selenium).

After StatsD and collectd data flow through the daemon, the page's tree shows their branches;
expanding one down to a series and clicking it shows a plot whose points are the values sent;
ticking two series overlays both in one plot. An open branch and an open plot follow a new
value without a click; rates read steady (a window, not 0.5 s snapshots) with three significant
digits; the relay's own history is plotted; Bucky's self-metrics are in the tree; the header says
version, host, uptime and config; the page has a favicon and a tree that grows the page. A
screenshot is kept: in $BUCKY_ARTIFACTS when set (CI keeps that directory), else in the test's
tmp_path (the README's docs/status-page.png is such a screenshot)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from buckyproc import Bucky
from fakecarbon import FakeCarbon
from peers import missing

from bucky import __version__
from bucky.protocol.collectd import encode
from bucky.protocol.collectd_records import GAUGE, ValueList

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1400,1000")
COLLECTD_VALUES = [10.0, 25.0, 17.5, 30.0]
STATSD_VALUES = [3, 7, 5]


def browser(profile: Path):  # type: ignore[no-untyped-def]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install selenium)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            missing(f"{path} is not installed (Debian package {package})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def wait_for(pred, timeout: float = 20.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = pred()
        except Exception:  # elements replaced under us while the page refreshes: try again
            got = None
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def send_data(bucky: Bucky) -> None:
    now = time.time()
    for i, value in enumerate(COLLECTD_VALUES):
        vl = ValueList("pagehost", "disk", "sda", "gauge", "temp", now - 40 + 10 * i, 10.0,
                       ((GAUGE, value),))
        for datagram in encode([vl]):
            bucky.send_udp("collectd_port", datagram)
    vl = ValueList("pagehost", "disk", "sdb", "gauge", "temp", now, 10.0, ((GAUGE, 21.0),))
    for datagram in encode([vl]):
        bucky.send_udp("collectd_port", datagram)
    for value in STATSD_VALUES:
        bucky.send_udp("statsd_port", f"page.load:{value}|g\npage.hits:1|c".encode())
        time.sleep(0.6)  # statsd_flush_time 0.5: each value is flushed at least once


def send_collectd(bucky: Bucky, value: float) -> None:
    vl = ValueList("pagehost", "disk", "sda", "gauge", "temp", time.time(), 10.0,
                   ((GAUGE, value),))
    for datagram in encode([vl]):
        bucky.send_udp("collectd_port", datagram)


def test_status_page_tree_plot_and_overlay(tmp_path) -> None:
    carbon = FakeCarbon().start()
    bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_flush_time": 0.5,
                             "self_metrics_interval": 1.0}).start()
    profile = Path(tempfile.mkdtemp(prefix="bucky-chromium-"))
    driver = None
    try:
        send_data(bucky)
        assert carbon.wait_for(lambda pts: {"pagehost.disk.sda.gauge.temp",
                                            "stats.gauges.page.load"} <= {p for p, _, _ in pts},
                               20), carbon.paths()
        traffic = threading.Event()

        def keep_sending() -> None:  # live rates on the page (and in the screenshot)
            while not traffic.wait(0.02):
                bucky.send_udp("statsd_port", b"page.hits:1|c\npage.latency:12|ms")

        threading.Thread(target=keep_sending, daemon=True).start()
        driver = browser(profile)
        driver.get(f"http://127.0.0.1:{bucky.ports['http_port']}/")
        css = driver.find_elements

        def top(path: str):  # type: ignore[no-untyped-def]
            found = css("css selector", f'#tree > li[data-path="{path}"]')
            return found[0] if found else None

        # Both inputs' branches are in the tree (the top is reloaded every 3 s until used).
        assert wait_for(lambda: top("pagehost") and top("stats"), 20), driver.page_source[:2000]
        assert wait_for(lambda: css("css selector", "#inputs tbody td")[0].text == "collectd")

        def expand(path: str) -> None:
            node = wait_for(lambda: css("css selector", f'li.node[data-path="{path}"]'))
            assert node, path
            node[0].find_element("css selector", ".toggle").click()
            assert wait_for(lambda: css("css selector", f'li[data-path^="{path}."]')), path

        for path in ("pagehost", "pagehost.disk", "pagehost.disk.sda", "pagehost.disk.sda.gauge"):
            expand(path)
        leaf = 'li.leaf[data-path="pagehost.disk.sda.gauge.temp"]'
        driver.find_element("css selector", leaf + " .leaf-name").click()

        def plot_values(li: str) -> list[float]:  # open plots are redrawn as data comes
            return sorted(float(p.get_attribute("data-value"))
                          for p in css("css selector", li + " svg.plot circle.pt"))

        values = wait_for(lambda: plot_values(leaf))
        assert values, driver.page_source[:3000]
        assert values == sorted(COLLECTD_VALUES)  # one point per value sent, and only those
        last = driver.find_element("css selector", leaf + " .last").text
        assert last == "= 30"

        # A second branch: the StatsD gauge; its points are the values sent (repeated per flush).
        for path in ("stats", "stats.gauges", "stats.gauges.page"):
            expand(path)
        gauge = 'li.leaf[data-path="stats.gauges.page.load"]'
        driver.find_element("css selector", gauge + " .leaf-name").click()
        assert set(wait_for(lambda: plot_values(gauge))) == set(STATSD_VALUES)

        # Overlay: tick two series, both are drawn in one plot.
        driver.find_element("css selector", leaf + " input.select").click()
        driver.find_element("css selector", gauge + " input.select").click()

        def overlay_paths() -> set[str]:
            lines = css("css selector", "#overlay-plot svg.plot polyline.line")
            return {line.get_attribute("data-path") for line in lines}

        wanted = {"pagehost.disk.sda.gauge.temp", "stats.gauges.page.load"}
        assert wait_for(lambda: overlay_paths() == wanted), overlay_paths()

        def overlay_values() -> dict[str, set[float]]:  # the plot is redrawn as data comes
            by_path: dict[str, set[float]] = {}
            for p in css("css selector", "#overlay-plot circle.pt"):
                by_path.setdefault(p.get_attribute("data-path"), set()).add(
                    float(p.get_attribute("data-value")))
            return by_path

        by_path = wait_for(overlay_values)
        assert by_path == {"pagehost.disk.sda.gauge.temp": set(COLLECTD_VALUES),
                           "stats.gauges.page.load": set(STATSD_VALUES)}
        # An open branch and an open plot refresh: a new value shows without a click.
        send_collectd(bucky, 99.0)
        assert wait_for(lambda: driver.find_element("css selector", leaf + " .last").text
                        == "= 99", 15), driver.find_element("css selector", leaf + " .last").text
        assert wait_for(lambda: 99.0 in plot_values(leaf), 15)
        assert css("css selector", 'li.node.open[data-path="pagehost.disk.sda"]')  # still open

        # Numbers: three significant digits with k / M; rates over a window stay steady.
        assert driver.execute_script(
            "return [fmtNum(1234.5), fmtNum(17.5), fmtNum(0.012345), fmtNum(2345678), fmtNum(30)]"
        ) == ["1.23k", "17.5", "0.0123", "2.35M", "30"]

        heads = [th.text for th in css("css selector", "#destinations thead th")]
        rate_column = heads.index("sent /s")

        def sent_rate() -> str:
            row = css("css selector", "#destinations tbody tr")[0]
            return row.find_elements("css selector", "td")[rate_column].text

        assert wait_for(lambda: sent_rate() not in ("", "0", "–"), 15), sent_rate()
        polls = []
        for _ in range(4):  # the page polls every 2 s
            polls.append(sent_rate())
            time.sleep(2.1)
        # never 0 between flushes, and at most three significant digits (no "78.947")
        assert all(p not in ("0", "–") and len(re.sub(r"\D", "", p).lstrip("0")) <= 3
                   for p in polls), polls
        row = css("css selector", "#destinations tbody tr")[0].text
        assert "consistent-hashing" in row, row  # the placement

        # The relay's own history: samples in per input, points out, backlog per destination.
        def history_lines(key: str) -> set[str]:
            lines = css("css selector",
                        f'#relay-history div[data-key="{key}"] svg.plot polyline.line')
            return {line.get_attribute("data-path") for line in lines}

        assert wait_for(lambda: "statsd" in history_lines("in"), 20), history_lines("in")
        assert wait_for(lambda: history_lines("out") and history_lines("backlog"), 10)

        # Bucky's own self-metrics are in the series tree like any other series.
        assert wait_for(lambda: top("bucky"), 20), driver.page_source[:2000]

        # Who and what; a favicon; the tree grows the page instead of scrolling in a box.
        about = driver.find_element("css selector", "#about").text
        assert f"version {__version__}" in about and " up " in f" {about}", about
        assert driver.execute_script(
            "return document.querySelector('link[rel=icon]').getAttribute('href')"
        ) == "/favicon.ico"
        assert driver.execute_script(
            "const t = document.getElementById('tree'); "
            "return getComputedStyle(t).overflowY === 'visible' && t.scrollHeight <= t.clientHeight"
        )

        assert wait_for(lambda: driver.find_element("css selector", "#health").text == "ok")
        assert wait_for(lambda: "up" in driver.find_element(
            "css selector", "#destinations tbody").text)
        artifacts = Path(os.environ.get("BUCKY_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "status-page.png"
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, max(1000, min(int(height) + 40, 2400)))
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        traffic.set() if "traffic" in locals() else None
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        assert bucky.stop() == 0
        carbon.stop()
