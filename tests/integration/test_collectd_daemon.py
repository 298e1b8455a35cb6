"""collectd through the running daemon: several workers keep each sender's rates, multicast."""

import socket
import struct
import time

import pytest
from buckyproc import Bucky, free_port
from fakecarbon import FakeCarbon

from bucky.protocol.collectd import encode
from bucky.protocol.collectd_records import COUNTER, ValueList

pytestmark = pytest.mark.integration


def counter_datagrams(host, start, steps=4):
    return [encode([ValueList(host, "wk", "", "counter", "c", start + i * 10.0, 10.0,
                              ((COUNTER, 1000 * i),))])[0] for i in range(steps)]


def test_two_workers_keep_each_sender_on_one_worker(tmp_path):
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_enabled": False,
                                 "metricsd_enabled": False, "collectd_workers": 2}).start()
        try:
            titles = bucky.child_pids()
            assert {"bucky: collectd.1", "bucky: collectd.2"} <= set(titles)
            start = time.time() - 100
            senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(12)]
            for step in range(4):
                for i, s in enumerate(senders):
                    s.sendto(counter_datagrams(f"h{i}", start)[step],
                             ("127.0.0.1", bucky.ports["collectd_port"]))
                time.sleep(0.05)
            for s in senders:
                s.close()
            want = {f"h{i}.wk.counter.c" for i in range(12)}
            assert carbon.wait_for(lambda pts: sum(p in want for p, _, _ in pts) >= 36, 15)
            for path, value, _ in carbon.points:
                if path in want:
                    assert value == pytest.approx(100.0)  # 1000 per 10 s, never a broken rate
        finally:
            assert bucky.stop() == 0


def test_multicast_group_is_joined(tmp_path):
    group = "239.192.74.66"
    port = free_port()
    # Can this machine deliver multicast over loopback at all? (needs a multicast route)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(("", port))
    try:
        mreq = struct.pack("=4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
        probe.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        probe.close()
        pytest.skip(f"cannot join a multicast group here: {exc}")
    probe.close()
    with FakeCarbon() as carbon:
        bucky = Bucky(tmp_path, {"graphite_port": carbon.port, "statsd_enabled": False,
                                 "metricsd_enabled": False, "collectd_ip": group,
                                 "collectd_port": port}).start()
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            try:
                sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                  socket.inet_aton("127.0.0.1"))
            except OSError:
                pass
            vl = ValueList("mc-host", "mc", "", "gauge", "g", time.time(), 10.0, ((1, 3.0),))
            try:
                for _ in range(3):
                    sender.sendto(encode([vl])[0], (group, port))
            except OSError as exc:
                pytest.skip(f"cannot send multicast over loopback here: {exc}")
            finally:
                sender.close()
            # The kernel took the join and the datagrams: from here on, nothing arriving is
            # Bucky's fault, not the machine's.
            assert carbon.wait_for(lambda pts: "mc-host.mc.gauge.g" in {p[0] for p in pts}, 5), \
                "the kernel accepted the multicast join and the datagrams, Bucky delivered nothing"
        finally:
            assert bucky.stop() == 0
