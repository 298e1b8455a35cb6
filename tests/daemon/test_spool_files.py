"""The on-disk spool: order, acknowledgement, bounds, crash recovery, corruption, full disks,
private modes and files planted in its folder."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
import uuid

import pytest

from bucky.daemon.outputs.spool_files import (
    REC_HEADER_SIZE,
    Spool,
    SpoolRefused,
    SpoolUnavailable,
    check_directory,
)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(path, max_bytes=1 << 20, clock=None, **kw) -> Spool:
    clock = clock or Clock()
    sp = Spool(str(path), max_bytes, clock=clock, wallclock=kw.pop("wallclock", clock), **kw)
    assert sp.open()
    return sp


def crash(sp: Spool) -> None:
    """What SIGKILL leaves: no sync, descriptors just gone (the page cache keeps the writes)."""
    for fd in (sp._wfd, sp._rfd, sp._lock_fd):
        if fd is not None:
            os.close(fd)
    sp._wfd = sp._rfd = sp._lock_fd = None
    sp.is_open = False


def drain(sp: Spool) -> list[tuple[bytes, int]]:
    out = []
    while (rec := sp.peek()) is not None:
        out.append(rec)
        sp.ack()
    return out


def records(n: int, size: int = 100) -> list[tuple[bytes, int]]:
    return [(bytes([65 + i % 26]) * size + str(i).encode(), i + 1) for i in range(n)]


def segments(path) -> list[str]:
    return sorted(p for p in os.listdir(path) if p.endswith(".seg"))


def test_oldest_first_and_segments_deleted_once_acked(tmp_path):
    sp = make(tmp_path, segment_bytes=1000)
    recs = records(30)
    for rec, pts in recs:
        assert sp.append(rec, pts)
    assert sp.points == sum(p for _, p in recs)
    assert len(segments(tmp_path)) > 3
    assert sp.peek() == recs[0] and sp.peek() == recs[0]  # the same until ack
    assert drain(sp) == recs
    assert not sp and sp.points == 0 and sp.bytes == 0
    assert segments(tmp_path) == []
    assert sp.counters["spooled"] == sp.counters["replayed"] == sum(p for _, p in recs)


def test_interleaved_append_and_replay(tmp_path):
    sp = make(tmp_path, segment_bytes=600)
    recs = records(40)
    got = []
    for i, (rec, pts) in enumerate(recs):
        sp.append(rec, pts)
        if i % 3 == 0:
            got.extend(drain(sp)[:])
    got.extend(drain(sp))
    assert got == recs


def test_reopen_after_crash_keeps_unacked_and_the_synced_cursor(tmp_path):
    clock = Clock()
    sp = make(tmp_path, clock=clock, segment_bytes=700)
    recs = records(20)
    for rec, pts in recs:
        sp.append(rec, pts)
    for _ in range(5):
        sp.peek()
        sp.ack()
    sp.sync()  # the cursor now says 5 were written to carbon
    sp.peek()
    sp.ack()  # acknowledged after the last sync: sent again after a crash (at-least-once)
    crash(sp)
    again = make(tmp_path, clock=clock)
    assert again.points == sum(p for _, p in recs[5:])
    assert drain(again) == recs[5:]
    assert again.counters["dropped.spool_corrupt"] == 0


def test_closed_cleanly_nothing_replayed_twice(tmp_path):
    sp = make(tmp_path)
    recs = records(10)
    for rec, pts in recs:
        sp.append(rec, pts)
    for _ in range(4):
        sp.peek()
        sp.ack()
    sp.close()
    again = make(tmp_path)
    assert drain(again) == recs[4:]
    again.close()
    assert segments(tmp_path) == []
    assert make(tmp_path).points == 0


def test_second_owner_is_refused(tmp_path):
    make(tmp_path)
    other = Spool(str(tmp_path), 1 << 20)
    assert other.open() is False


def test_last_record_truncated_at_every_byte(tmp_path):
    src = tmp_path / "src"
    sp = make(src)
    recs = records(3, size=40)
    for rec, pts in recs:
        sp.append(rec, pts)
    sp.close()
    (name,) = segments(src)
    data = (src / name).read_bytes()
    last = len(recs[2][0]) + REC_HEADER_SIZE
    start = len(data) - last
    for cut in range(start, len(data)):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(src, d)
        with open(d / name, "r+b") as f:
            f.truncate(cut)
        again = make(d)
        assert drain(again) == recs[:2], cut
        torn = cut - start
        assert again.counters["spool_corrupt_bytes"] == torn, cut
        # a header that survived whole tells how many datapoints were lost
        expected = recs[2][1] if torn >= REC_HEADER_SIZE else 0
        assert again.counters["dropped.spool_corrupt"] == expected, cut
        assert segments(d) == []


def test_bit_flips_are_never_returned(tmp_path):
    src = tmp_path / "src"
    sp = make(src)
    recs = records(3, size=30)
    for rec, pts in recs:
        sp.append(rec, pts)
    sp.close()
    (name,) = segments(src)
    data = (src / name).read_bytes()
    middle_start = 8 + REC_HEADER_SIZE + len(recs[0][0])
    middle_end = middle_start + REC_HEADER_SIZE + len(recs[1][0])
    for pos in range(8, len(data)):
        for bit in (0, 5):
            d = tmp_path / "flip"
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(src, d)
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            (d / name).write_bytes(bytes(flipped))
            again = make(d)
            got = drain(again)
            assert all(rec in recs for rec in got), (pos, bit)
            assert len(got) == 2, (pos, bit)  # exactly the damaged record is lost
            if middle_start <= pos < middle_end:
                assert got == [recs[0], recs[2]], (pos, bit)
            assert again.counters["spool_corrupt_bytes"] > 0
            again.close()


def test_corruption_in_a_segment_written_by_this_process_is_counted_at_read(tmp_path):
    sp = make(tmp_path)
    recs = records(3, size=30)
    for rec, pts in recs:
        sp.append(rec, pts)
    (name,) = segments(tmp_path)
    with open(tmp_path / name, "r+b") as f:
        f.seek(8 + REC_HEADER_SIZE + 3)
        f.write(b"\xff")
    assert drain(sp) == recs[1:]
    assert sp.counters["dropped.spool_corrupt"] == recs[0][1]


def test_not_a_segment_is_ignored_and_counted(tmp_path):
    (tmp_path / "0000000000000001.seg").write_bytes(b"garbage, not a spool segment")
    sp = make(tmp_path)
    assert sp.peek() is None
    assert sp.counters["spool_corrupt_bytes"] > 0


def test_max_bytes_drops_oldest_segments_and_counts_them(tmp_path):
    sp = make(tmp_path, max_bytes=4000, segment_bytes=1000)
    recs = records(100)
    for rec, pts in recs:
        assert sp.append(rec, pts)
        assert sp.bytes <= 4000
    total = sum(p for _, p in recs)
    kept = drain(sp)
    assert kept == recs[len(recs) - len(kept):]  # the newest survive, in order
    assert sp.counters["dropped.spool_full"] + sum(p for _, p in kept) == total


def test_peeked_record_dropped_for_room_is_still_acked_harmlessly(tmp_path):
    sp = make(tmp_path, max_bytes=3000, segment_bytes=1000)
    recs = records(60)
    sp.append(*recs[0])
    assert sp.peek() == recs[0]
    for rec, pts in recs[1:]:
        sp.append(rec, pts)
    sp.ack()  # its segment is gone: no effect, no crash
    got = drain(sp)
    assert got == recs[len(recs) - len(got):]
    assert sp.counters["dropped.spool_full"] + sum(p for _, p in got) + recs[0][1] == sum(
        p for _, p in recs)


def test_record_larger_than_the_spool_is_refused(tmp_path):
    sp = make(tmp_path, max_bytes=1000)
    assert not sp.append(b"x" * 2000, 5)
    assert sp.counters["spool_too_large"] == 1


def test_fsync_on_the_timer_not_per_write(tmp_path):
    clock = Clock()
    sp = make(tmp_path, clock=clock, sync_interval=1.0)
    calls = []
    real = os.fsync
    sp._os_fsync = lambda fd: (calls.append(fd), real(fd))  # type: ignore[assignment]
    for rec, pts in records(50):
        sp.append(rec, pts)
    assert sp.tick(clock()) > 0 and calls == []
    clock.t += 1.0
    sp.tick(clock())
    assert calls  # data (and the cursor file)
    calls.clear()
    clock.t += 1.0
    sp.tick(clock())
    assert calls == []  # nothing new: nothing to sync


def test_enospc_goes_memory_only_and_retries_later(tmp_path):
    clock = Clock()
    sp = make(tmp_path, clock=clock, retry_delay=30)
    recs = records(6)
    assert sp.append(*recs[0])
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 10:
            real_write(fd, bytes(data[: len(data) // 2]))
            return len(data) // 2
        raise OSError(errno.ENOSPC, "No space left on device")

    sp._os_write = half_then_full  # type: ignore[assignment]
    assert not sp.append(*recs[1])  # never raises
    assert sp.counters["spool_errors"] == 1 and sp.counters["spool_errors.ENOSPC"] == 1
    assert not sp.available
    sp._os_write = real_write  # type: ignore[assignment]
    assert not sp.append(*recs[2])  # still backing off
    clock.t += 30
    assert sp.available and sp.append(*recs[3])
    assert drain(sp) == [recs[0], recs[3]]
    assert sp.counters["dropped.spool_corrupt"] == 0
    assert sp.counters["spool_corrupt_bytes"] == 0


def test_eio_on_fsync_is_contained(tmp_path):
    clock = Clock()
    sp = make(tmp_path, clock=clock)
    sp.append(b"abc", 1)

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    sp._os_fsync = eio  # type: ignore[assignment]
    clock.t += 2
    sp.tick(clock())
    assert sp.counters["spool_errors.EIO"] == 1
    assert not sp.append(b"def", 1)
    assert drain(sp) == [(b"abc", 1)]


def test_gauges_and_oldest_age(tmp_path):
    clock = Clock(5000.0)
    sp = make(tmp_path, clock=clock)
    assert sp.gauges() == {"spool_bytes": 0, "spool_points": 0, "spool_oldest_age": 0.0}
    sp.append(b"a" * 10, 3)
    clock.t += 7
    sp.append(b"b" * 10, 4)
    g = sp.gauges()
    assert g["spool_points"] == 7 and g["spool_bytes"] > 20 and g["spool_oldest_age"] == 7.0
    sp.peek()
    sp.ack()
    clock.t += 1
    sp.peek()
    assert sp.gauges()["spool_oldest_age"] == 1.0


def test_unwritable_directory(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SpoolUnavailable):
        check_directory(str(target / "spool"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_real_full_tmpfs(tmp_path):
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        clock = Clock()
        sp = make(mnt, max_bytes=1 << 30, clock=clock)
        recs = records(200, size=1000)
        written = [r for r in recs if sp.append(*r)]
        assert 20 < len(written) < 200
        assert sp.counters["spool_errors.ENOSPC"] >= 1
        clock.t += 60
        sp.tick(clock())
        assert drain(sp) == written
        clock.t += 60
        assert sp.append(*recs[0])  # space again: back on disk
        assert drain(sp) == [recs[0]]
        sp.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- private modes, and what an attacker may plant in the folder


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def victim(tmp_path, content: bytes = b"precious\n"):
    path = tmp_path / "victim"
    path.write_bytes(content)
    return path


def test_a_symlink_planted_as_the_next_segment_is_refused_not_truncated(tmp_path):
    spool_dir = tmp_path / "spool"
    target = victim(tmp_path)
    sp = make(spool_dir, segment_bytes=600)
    recs = records(3, size=400)  # one record per segment
    assert sp.append(*recs[0])
    nxt = spool_dir / f"{sp._next_seq:016d}.seg"
    os.symlink(target, nxt)
    for rec in recs[1:]:
        assert sp.append(*rec)  # the first needs a new segment: the planted name is skipped
    assert target.read_bytes() == b"precious\n"
    assert os.path.islink(nxt)
    assert sp.counters["spool_refused_files"] == 1
    assert drain(sp) == recs


def test_planted_files_found_at_open_are_refused_and_never_read(tmp_path):
    spool_dir = tmp_path / "spool"
    target = victim(tmp_path)
    sp = make(spool_dir)
    recs = records(2)
    for rec in recs:
        sp.append(*rec)
    sp.close()
    os.symlink(target, spool_dir / f"{9:016d}.seg")  # would be read and sent to carbon
    os.mkfifo(spool_dir / f"{10:016d}.seg")  # would block a reader forever
    os.mkdir(spool_dir / f"{11:016d}.seg")
    os.unlink(spool_dir / "cursor")
    os.symlink(target, spool_dir / "cursor")
    sp = make(spool_dir)
    assert sp.counters["spool_refused_files"] == 4
    assert drain(sp) == recs
    assert sp._next_seq == 12  # a new segment never takes a refused name
    sp.append(*recs[0])
    sp.sync()
    assert target.read_bytes() == b"precious\n"
    assert not os.path.islink(spool_dir / "cursor") and mode(spool_dir / "cursor") == 0o600
    assert os.path.islink(spool_dir / f"{9:016d}.seg")  # left for the operator to look at


def test_planted_cursor_tmp_and_probe_links_are_not_followed(tmp_path):
    spool_dir = tmp_path / "spool"
    target = victim(tmp_path)
    spool_dir.mkdir(mode=0o700)
    os.symlink(target, spool_dir / f".probe.{os.getpid()}")
    os.symlink(target, spool_dir / "cursor.tmp")
    check_directory(str(spool_dir))
    sp = make(spool_dir)
    os.symlink(target, spool_dir / "cursor.tmp")  # planted again after open's clean-up
    sp.append(b"abc", 1)
    drain(sp)
    sp.sync()
    assert target.read_bytes() == b"precious\n"
    assert not os.path.lexists(spool_dir / "cursor.tmp")
    assert os.path.isfile(spool_dir / "cursor") and not os.path.islink(spool_dir / "cursor")


def test_a_symlinked_lock_or_destination_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = tmp_path / "linked"
    os.symlink(elsewhere, linked)
    sp = Spool(str(linked), 1 << 20)
    with pytest.raises(SpoolRefused):
        sp.open()
    with pytest.raises(SpoolRefused):
        sp.open()  # retried every second by its owner: counted once
    assert sp.counters["spool_refused_files"] == 1 and not sp.is_open
    assert os.listdir(elsewhere) == []
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    target = victim(tmp_path)
    os.symlink(target, spool_dir / "lock")
    sp = Spool(str(spool_dir), 1 << 20)
    with pytest.raises(SpoolRefused):
        sp.open()
    assert sp.counters["spool_refused_files"] == 1
    assert target.read_bytes() == b"precious\n"
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"x")
    with pytest.raises(SpoolRefused):
        check_directory(str(not_a_folder))


def test_folders_0700_and_files_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        spool_dir = tmp_path / "root" / "dest"
        sp = make(spool_dir, segment_bytes=600)
        for rec in records(5):
            sp.append(*rec)
        sp.sync()
    finally:
        os.umask(old)
    assert mode(tmp_path / "root") == mode(spool_dir) == 0o700
    names = os.listdir(spool_dir)
    assert "lock" in names and "cursor" in names and len(segments(spool_dir)) > 1
    assert {name: mode(spool_dir / name) for name in names} == {name: 0o600 for name in names}


def test_a_folder_and_files_open_to_others_are_narrowed_with_a_warning(tmp_path, caplog):
    spool_dir = tmp_path / "spool"
    sp = make(spool_dir)
    recs = records(2)
    for rec in recs:
        sp.append(*rec)
    sp.close()
    os.chmod(spool_dir, 0o755)  # as Bucky before 0700 left it
    for name in os.listdir(spool_dir):
        os.chmod(spool_dir / name, 0o644)
    with caplog.at_level(logging.WARNING):
        sp = make(spool_dir)
    assert "narrowed to 0700" in caplog.text
    assert mode(spool_dir) == 0o700
    assert drain(sp) == recs
    assert mode(spool_dir / "lock") == mode(spool_dir / "cursor") == 0o600


def test_a_folder_that_cannot_be_narrowed_is_refused(tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    os.chmod(spool_dir, 0o777)

    def not_the_owner(fd, mode):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", not_the_owner)
    sp = Spool(str(spool_dir), 1 << 20)
    with pytest.raises(SpoolRefused, match="cannot be narrowed"):
        sp.open()
    assert sp.counters["spool_refused_files"] == 1


def test_the_operators_root_is_followed_and_keeps_its_mode(tmp_path):
    real = tmp_path / "disk"
    real.mkdir()
    os.chmod(real, 0o750)
    root = tmp_path / "root"
    os.symlink(real, root)
    check_directory(str(root), private=False)
    assert mode(real) == 0o750
    check_directory(str(root / "dest"))
    assert mode(real / "dest") == 0o700
