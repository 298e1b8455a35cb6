"""An append-only on-disk spool of encoded chunks for one Graphite destination.

Layout of a spool directory (one per destination):

- `<seq>.seg` segment files (16-digit sequence number, oldest first). Each starts with an 8-byte
  header (magic `BKSP`, u16 version, u16 reserved) followed by records:
  `magic(2) length(u32) points(u32) spooled_at(f64) header_crc(u32) payload_crc(u32) payload`,
  little endian, both checksums crc32. A record whose header checksum fails is skipped by scanning
  forward to the next valid header; a record whose payload checksum fails is skipped whole; an
  incomplete record at the end of a segment (a torn write) is skipped. Skipped data is counted
  (`dropped.spool_corrupt` in datapoints when the header was intact, `spool_corrupt_bytes`
  always) and never returned.
- `cursor`: the read position (segment, offset) persisted at every sync (write, fsync, rename).
  Records acknowledged after the last sync are returned again after a crash (at-least-once).
- `lock`: an flock held while a process owns the spool, so two processes never share one.

Spooled metrics are private and nothing planted in the folder is followed: the folder is created
0700 (an existing one open to other users is narrowed to 0700, with a warning; one that cannot be
narrowed is refused), files are created 0600 (`O_EXCL` where the file must be new) and every file
is opened with `O_NOFOLLOW`. A symbolic link or anything else that is not a regular file where a
spool file (or the folder) belongs is refused: logged once, counted in `spool_refused_files`,
never read, written or truncated (a refused folder or lock leaves the spool memory-only).

Writes are plain appends (the page cache survives a crash of the process); fsync runs on a timer
(`tick`, at most every `sync_interval` seconds), never per write. Segments are deleted once all
their records were acknowledged. Beyond `max_bytes` whole oldest segments are dropped
(`dropped.spool_full`). A write error (ENOSPC, EIO, ...) never reaches the caller: `append`
returns False, the spool turns memory-only for `retry_delay` seconds (`spool_errors`, logged).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable

from bucky.daemon.statedir import missing_folders

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"BKSP"
VERSION = 1
_SEG_HEADER = struct.Struct("<4sHH")
_REC_MAGIC = b"\xb5\x5c"
_REC_HEAD = struct.Struct("<2sIId")  # magic, length, points, spooled_at
_REC_CRCS = struct.Struct("<II")  # header crc, payload crc
REC_HEADER_SIZE = _REC_HEAD.size + _REC_CRCS.size
_CURSOR = struct.Struct("<QQI")  # segment, offset, crc32 of the first 16 bytes
MAX_RECORD = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
RETRY_DELAY = 30.0


FOLDER_MODE = 0o700
FILE_MODE = 0o600
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


class SpoolUnavailable(OSError):
    """The spool directory cannot be created or written (a config error at start)."""


class SpoolRefused(SpoolUnavailable):
    """A symbolic link or other non-regular file where a spool file or folder belongs."""

    def __init__(self, path: str, why: str, code: int = errno.EPERM) -> None:
        super().__init__(code, f"{path}: {why}, refused")
        self.path = path


def check_directory(path: str, *, private: bool = True) -> None:
    """Create `path` if needed (each missing level 0700) and prove it writable; raises
    SpoolUnavailable with the reason (SpoolRefused: not a directory, or cannot be made private).

    `private`: the folder holds spool files (a destination's folder): a symbolic link there is
    refused and a mode open to other users narrowed to 0700. The root above the destinations
    (`graphite_spool_dir`) is the operator's: followed and left with the mode it has."""
    try:
        _make_folders(path)
        if private:
            _make_private(path)
        elif not os.path.isdir(path):
            raise SpoolRefused(path, "not a directory", errno.ENOTDIR)
        probe = os.path.join(path, f".probe.{os.getpid()}")
        _unlink_quietly(probe)  # a leftover of a process with this pid (or something planted)
        fd = os.open(probe, os.O_WRONLY | _NEW_FILE, FILE_MODE)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        os.unlink(probe)
    except SpoolUnavailable:
        raise
    except OSError as exc:
        raise SpoolUnavailable(exc.errno or 0, f"{path}: {exc.strerror or exc}") from None


def _make_folders(path: str) -> None:
    """mkdir -p with mode 0700 for every level it creates (os.makedirs gives only the leaf it)."""
    for folder in missing_folders(path):
        try:
            os.mkdir(folder, FOLDER_MODE)
        except FileExistsError:
            pass  # made meanwhile by another process


def _make_private(path: str) -> None:
    """Refuse a folder that is a symbolic link or not a folder; narrow a wider mode to 0700."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SpoolRefused(path, "a symbolic link, not a folder", errno.ELOOP) from None
        if exc.errno == errno.ENOTDIR:
            raise SpoolRefused(path, "not a folder", errno.ENOTDIR) from None
        raise
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & ~FOLDER_MODE:
            try:
                os.fchmod(fd, FOLDER_MODE)
            except OSError as exc:
                raise SpoolRefused(path, f"mode {mode:04o} is open to other users and cannot be "
                                         f"narrowed to 0700 ({exc.strerror})") from None
            log.warning("%s: the spool folder had mode %04o, open to other users: narrowed to "
                        "0700", path, mode)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)  # a symbolic link is removed itself, its target is never touched
    except OSError:
        pass


def _seg_name(seq: int) -> str:
    return f"{seq:016d}.seg"


class _Segment:
    __slots__ = ("seq", "path", "size", "end", "points", "first_ts", "scanned")

    def __init__(self, seq: int, path: str) -> None:
        self.seq = seq
        self.path = path
        self.size = 0  # bytes on disk
        self.end = 0  # end of the last whole record written or found (never read beyond)
        self.points = 0  # datapoints in good records from the read start on
        self.first_ts = 0.0  # spooled_at of the first record (0: none)
        self.scanned = False  # found at open: its corruption was counted by the scan


def encode_record(payload: bytes, points: int, spooled_at: float) -> bytes:
    head = _REC_HEAD.pack(_REC_MAGIC, len(payload), points, spooled_at)
    return head + _REC_CRCS.pack(zlib.crc32(head), zlib.crc32(payload)) + payload


class Spool:
    """One destination's spool. Not thread-safe; every method is cheap except `open` (a scan)."""

    def __init__(self, directory: str, max_bytes: int, *, sync_interval: float = 1.0,
                 segment_bytes: int | None = None, retry_delay: float = RETRY_DELAY,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time, name: str = "spool") -> None:
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self.sync_interval = float(sync_interval)
        if segment_bytes is None:
            segment_bytes = max(64 * 1024, min(DEFAULT_SEGMENT_BYTES, self.max_bytes // 8))
        self.segment_bytes = int(segment_bytes)
        self.retry_delay = retry_delay
        self.name = name
        self._clock = clock
        self._wallclock = wallclock
        self.counters: Counter[str] = Counter()
        self._segments: list[_Segment] = []
        self._next_seq = 1
        self._wfd: int | None = None  # the active (last) segment, open for appending
        self._rfd: int | None = None
        self._rseq = 0
        self._rpos = 0  # read position in self._segments[0]
        self._peeked: tuple[int, int, int, int] | None = None  # seq, pos, next pos, points
        self._consumed = 0  # points consumed (acked or skipped) in the first segment
        self._head_ts = 0.0  # spooled_at of the latest record peeked in the first segment
        self._dirty = False  # data written since the last fsync
        self._dir_dirty = False
        self._cursor_saved: tuple[int, int] = (0, 0)
        self._last_sync = clock()
        self._down_until: float | None = None  # memory-only until then (a write error)
        self._lock_fd: int | None = None
        self._refused: set[str] = set()  # paths refused and logged (once each)
        self.is_open = False
        # the system calls, replaceable by tests that inject faults
        self._os_write: Callable[[int, bytes], int] = os.write
        self._os_fsync: Callable[[int], None] = os.fsync

    # -- state

    @property
    def points(self) -> int:
        return sum(s.points for s in self._segments) - self._consumed

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def __bool__(self) -> bool:
        return self.points > 0 or self._peeked is not None

    @property
    def available(self) -> bool:
        """Whether `append` can write now (open, and not in the back-off after a write error)."""
        return self.is_open and (self._down_until is None or self._clock() >= self._down_until)

    def oldest_age(self) -> float:
        """Seconds since the oldest datapoint still spooled was written to the spool (0: empty)."""
        if not self:
            return 0.0
        ts = self._head_ts or next((s.first_ts for s in self._segments if s.first_ts), 0.0)
        return max(0.0, self._wallclock() - ts) if ts else 0.0

    def gauges(self) -> dict[str, float]:
        return {"spool_bytes": self.bytes, "spool_points": self.points,
                "spool_oldest_age": round(self.oldest_age(), 3)}

    # -- open / close

    def open(self) -> bool:
        """Lock the directory and scan what an earlier process left; False while another holds it.

        Raises SpoolUnavailable when the directory cannot be created or locked for a reason other
        than another owner."""
        try:
            check_directory(self.directory)
            fd = self._open_file(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT)
        except SpoolRefused as exc:
            self._refuse(exc)
            raise
        except SpoolUnavailable:
            raise
        except OSError as exc:
            raise SpoolUnavailable(exc.errno or 0, f"{self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise SpoolUnavailable(exc.errno or 0, f"{self.directory}: {exc.strerror}") from None
        self._lock_fd = fd
        cursor = self._load_cursor()
        seqs = []
        for entry in os.listdir(self.directory):
            if entry.endswith(".seg") and entry[:-4].isdigit():
                seqs.append(int(entry[:-4]))
            elif entry.endswith(".tmp"):
                self._unlink(os.path.join(self.directory, entry))
        for seq in sorted(seqs):
            path = os.path.join(self.directory, _seg_name(seq))
            self._next_seq = max(self._next_seq, seq + 1)
            if seq < cursor[0]:
                self._unlink(path)  # fully acknowledged before the last sync
                continue
            seg = _Segment(seq, path)
            start = max(cursor[1], _SEG_HEADER.size) if seq == cursor[0] else _SEG_HEADER.size
            if self._scan(seg, start):
                if not self._segments:
                    self._rseq, self._rpos = seq, start
                self._segments.append(seg)
        self._cursor_saved = (self._rseq, self._rpos)
        self.is_open = True
        if self.points:
            log.info("%s: found %d spooled datapoints (%d bytes) in %s", self.name, self.points,
                     self.bytes, self.directory)
        return True

    def close(self) -> None:
        if not self.is_open:
            return
        self.sync()
        for fd in (self._wfd, self._rfd):
            if fd is not None:
                os.close(fd)
        self._wfd = self._rfd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self._segments = []
        self._peeked = None
        self._consumed = 0
        self.is_open = False

    def _open_file(self, path: str, flags: int) -> int:
        """os.open that never follows a symbolic link and opens only a regular file (raises
        SpoolRefused otherwise); a file created gets 0600, an existing wider one is narrowed."""
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SpoolRefused(path, "a symbolic link", errno.ELOOP) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SpoolRefused(path, "not a regular file", errno.EINVAL)
            if stat.S_IMODE(st.st_mode) & ~FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # written by an older version (0644)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refuse(self, exc: SpoolRefused) -> None:
        """Count and log a refused path once (the spool retries opening every second)."""
        if exc.path in self._refused:
            return
        self._refused.add(exc.path)
        self.counters["spool_refused_files"] += 1
        log.error("%s: %s", self.name, exc.strerror)

    def _load_cursor(self) -> tuple[int, int]:
        try:
            fd = self._open_file(os.path.join(self.directory, "cursor"), os.O_RDONLY)
        except SpoolRefused as exc:  # read the segments from their start (at least once)
            self._refuse(exc)
            return (0, 0)
        except OSError:
            return (0, 0)
        try:
            raw = os.read(fd, _CURSOR.size + 1)
        except OSError:
            return (0, 0)
        finally:
            os.close(fd)
        if len(raw) != _CURSOR.size:
            return (0, 0)
        seq, offset, crc = _CURSOR.unpack(raw)
        if zlib.crc32(raw[:16]) != crc:
            return (0, 0)
        return (seq, offset)

    def _scan(self, seg: _Segment, start: int) -> bool:
        """Sum the good records of a segment left by an earlier process; False: not a segment."""
        try:
            fd = self._open_file(seg.path, os.O_RDONLY)
        except SpoolRefused as exc:  # left where it is, for the operator to look at
            self._refuse(exc)
            return False
        except OSError as exc:
            log.error("%s: cannot read %s: %s; skipped", self.name, seg.path, exc)
            return False
        try:
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError as exc:
            log.error("%s: cannot read %s: %s; skipped", self.name, seg.path, exc)
            return False
        seg.size = seg.end = len(data)
        seg.scanned = True
        if len(data) < _SEG_HEADER.size or _SEG_HEADER.unpack_from(data)[:2] != (SEGMENT_MAGIC,
                                                                                   VERSION):
            log.error("%s: %s is not a version-%d spool segment; ignored", self.name, seg.path,
                      VERSION)
            self.counters["spool_corrupt_bytes"] += len(data)
            self._unlink(seg.path)
            return False
        pos = max(start, _SEG_HEADER.size)
        bad_bytes = bad_points = 0
        while pos < len(data):
            found = self._parse(data, pos)
            kind, value, nxt = found
            if kind == "ok":
                seg.points += value
                if not seg.first_ts:
                    seg.first_ts = _REC_HEAD.unpack_from(data, pos)[3]
            elif kind == "bad_payload":
                bad_points += value
                bad_bytes += nxt - pos
            else:  # bad header or torn tail: nxt is the next valid header (or the end)
                bad_bytes += nxt - pos
            pos = nxt
        if bad_bytes:
            self.counters["dropped.spool_corrupt"] += bad_points
            self.counters["spool_corrupt_bytes"] += bad_bytes
            log.error("%s: %s: skipped %d corrupt bytes (%d datapoints known lost)", self.name,
                      seg.path, bad_bytes, bad_points)
        return True

    @staticmethod
    def _parse(data: bytes | memoryview, pos: int) -> tuple[str, int, int]:
        """("ok", points, next) | ("bad_payload", points, next) | ("bad", 0, next)

        A bad or torn header resynchronises on the next position holding a valid header."""
        end = len(data)
        if end - pos >= REC_HEADER_SIZE and data[pos : pos + 2] == _REC_MAGIC:
            head = bytes(data[pos : pos + _REC_HEAD.size])
            hcrc, pcrc = _REC_CRCS.unpack_from(data, pos + _REC_HEAD.size)
            if zlib.crc32(head) == hcrc:
                _, length, points, _ = _REC_HEAD.unpack(head)
                stop = pos + REC_HEADER_SIZE + length
                if stop > end:  # torn: the record's end was never written
                    return "bad_payload", points, end
                if zlib.crc32(data[pos + REC_HEADER_SIZE : stop]) == pcrc:
                    return "ok", points, stop
                return "bad_payload", points, stop
        # resynchronise: the next magic that starts a valid header
        search = pos + 1
        raw = bytes(data) if isinstance(data, memoryview) else data
        while True:
            found = raw.find(_REC_MAGIC, search)
            if found < 0 or end - found < REC_HEADER_SIZE:
                return "bad", 0, end
            head = raw[found : found + _REC_HEAD.size]
            if zlib.crc32(head) == _REC_CRCS.unpack_from(raw, found + _REC_HEAD.size)[0]:
                return "bad", 0, found
            search = found + 1

    # -- writing

    def append(self, record: bytes, points: int) -> bool:
        """Spool one record; False when it was not written (memory-only now, or too large)."""
        if not self.is_open:
            return False
        now = self._clock()
        if self._down_until is not None:
            if now < self._down_until:
                return False
            self._down_until = None
            log.info("%s: retrying the disk spool in %s", self.name, self.directory)
        blob = encode_record(record, points, self._wallclock())
        if len(blob) + _SEG_HEADER.size > self.max_bytes or len(record) > MAX_RECORD:
            self.counters["spool_too_large"] += 1
            return False
        self._make_room(len(blob))
        try:
            seg = self._writable_segment(len(blob))
            self._write_all(seg, blob)
        except OSError as exc:
            self._write_failed(exc)
            return False
        seg.end = seg.size
        seg.points += points
        if not seg.first_ts:
            seg.first_ts = _REC_HEAD.unpack_from(blob)[3]
        self.counters["spooled"] += points
        self._dirty = True
        return True

    def _writable_segment(self, need: int) -> _Segment:
        last = self._segments[-1] if self._segments else None
        if (self._wfd is not None and last is not None
                and last.size + need <= max(self.segment_bytes, _SEG_HEADER.size + need)):
            return last
        self._seal()
        fd, seq, path = self._new_segment_file()
        seg = _Segment(seq, path)
        self._wfd = fd
        self._next_seq = seq + 1
        self._segments.append(seg)
        if len(self._segments) == 1:
            self._rseq, self._rpos, self._consumed = seq, _SEG_HEADER.size, 0
        self._dir_dirty = True
        self._write_all(seg, _SEG_HEADER.pack(SEGMENT_MAGIC, VERSION, 0))
        seg.end = seg.size
        return seg

    def _new_segment_file(self) -> tuple[int, int, str]:
        """Create the next segment file, new (O_EXCL): a name taken meanwhile (a planted file or
        link) is refused and counted, and skipped for the next number."""
        for _ in range(3):
            seq = self._next_seq
            self._next_seq = seq + 1
            path = os.path.join(self.directory, _seg_name(seq))
            try:
                return os.open(path, os.O_WRONLY | os.O_APPEND | _NEW_FILE, FILE_MODE), seq, path
            except FileExistsError:
                self._refuse(SpoolRefused(path, "exists (not written by this spool)",
                                          errno.EEXIST))
        raise OSError(errno.EEXIST, "the next segment names are taken")

    def _write_all(self, seg: _Segment, blob: bytes) -> None:
        assert self._wfd is not None
        view = memoryview(blob)
        while view:
            written = self._os_write(self._wfd, view)
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            seg.size += written
            view = view[written:]

    def _write_failed(self, exc: OSError) -> None:
        """Cut the torn record off the active segment, seal it and go memory-only for a while."""
        reason = errno.errorcode.get(exc.errno or 0, "EIO")
        self.counters["spool_errors"] += 1
        self.counters[f"spool_errors.{reason}"] += 1
        log.error("%s: writing the spool in %s failed (%s); memory-only for %.0f s",
                  self.name, self.directory, exc.strerror or exc, self.retry_delay)
        if self._segments and self._wfd is not None:
            seg = self._segments[-1]
            try:
                os.ftruncate(self._wfd, seg.end)
                seg.size = seg.end
            except OSError:
                pass  # the reader never goes past seg.end anyway
        self._seal(sync=False)
        if self._segments and self._segments[-1].points == 0:
            self._drop_segment(self._segments[-1])  # only a header: nothing to keep
        self._down_until = self._clock() + self.retry_delay

    def _seal(self, sync: bool = True) -> None:
        if self._wfd is None:
            return
        if sync and self._dirty:
            try:
                self._os_fsync(self._wfd)
            except OSError as exc:
                log.error("%s: fsync failed: %s", self.name, exc)
        os.close(self._wfd)
        self._wfd = None

    def _make_room(self, need: int) -> None:
        """Drop whole oldest segments until `need` more bytes fit in max_bytes."""
        while self._segments and self.bytes + need + _SEG_HEADER.size > self.max_bytes:
            seg = self._segments[0]
            lost = seg.points - self._consumed
            if self._peeked is not None and self._peeked[0] == seg.seq:
                lost -= self._peeked[3]  # already handed out: it will be written
                self._peeked = None
            if seg is self._segments[-1]:
                self._seal()
            self.counters["dropped.spool_full"] += lost
            log.warning("%s: spool full (%d bytes): dropped the oldest %d datapoints", self.name,
                        self.max_bytes, lost)
            self._drop_segment(seg)

    def _drop_segment(self, seg: _Segment) -> None:
        first = self._segments and self._segments[0] is seg
        if seg is self._segments[-1] and self._wfd is not None:
            os.close(self._wfd)
            self._wfd = None
        self._segments.remove(seg)
        self._unlink(seg.path)
        self._dir_dirty = True
        if first:
            self._head_ts = 0.0
            if self._rfd is not None:
                os.close(self._rfd)
                self._rfd = None
            self._consumed = 0
            if self._segments:
                nxt = self._segments[0]
                self._rseq = nxt.seq
                self._rpos = _SEG_HEADER.size
            else:
                self._rseq, self._rpos = 0, 0

    # -- reading

    def peek(self) -> tuple[bytes, int] | None:
        """The oldest record not yet acknowledged, or None. The same one until `ack`."""
        while self._segments:
            seg = self._segments[0]
            if self._rpos >= seg.end:
                active = seg is self._segments[-1] and self._wfd is not None
                if active and self._consumed < seg.points:
                    return None  # cannot happen: whole records only up to seg.end
                missing = seg.points - self._consumed
                if missing > 0:  # records lost in a damaged region of a segment we wrote
                    self.counters["dropped.spool_corrupt"] += missing
                if active:
                    self._seal()
                self._drop_segment(seg)
                continue
            try:
                if self._rfd is None:
                    self._rfd = self._open_file(seg.path, os.O_RDONLY)
                data = os.pread(self._rfd, REC_HEADER_SIZE, self._rpos)
                if len(data) == REC_HEADER_SIZE and data[:2] == _REC_MAGIC:
                    length = _REC_HEAD.unpack_from(data)[1]
                    if self._rpos + REC_HEADER_SIZE + length <= seg.end:
                        data += os.pread(self._rfd, length, self._rpos + REC_HEADER_SIZE)
                kind, points, nxt = self._parse(data, 0)
                if kind != "ok":  # resynchronise over the rest of the segment
                    data = os.pread(self._rfd, seg.end - self._rpos, self._rpos)
                    kind, points, nxt = self._parse(data, 0)
            except OSError as exc:
                if isinstance(exc, SpoolRefused):
                    self._refuse(exc)
                log.error("%s: reading %s failed: %s; dropped", self.name, seg.path, exc)
                self.counters["dropped.spool_corrupt"] += seg.points - self._consumed
                self._consumed = seg.points
                self._rpos = seg.end
                continue
            if kind == "ok":
                self._peeked = (seg.seq, self._rpos, self._rpos + nxt, points)
                self._head_ts = _REC_HEAD.unpack_from(data)[3]
                return data[REC_HEADER_SIZE:nxt], points
            # a corrupt record: counted by the scan for segments found at open, else here
            if not seg.scanned:
                self.counters["spool_corrupt_bytes"] += nxt
                if kind == "bad_payload":
                    self.counters["dropped.spool_corrupt"] += points
                    self._consumed += points
                log.error("%s: %s: skipped %d corrupt bytes", self.name, seg.path, nxt)
            self._rpos += nxt
        return None

    def ack(self) -> None:
        """The record from the latest `peek` was written whole to carbon."""
        peeked, self._peeked = self._peeked, None
        if peeked is None or not self._segments or self._segments[0].seq != peeked[0]:
            return
        if self._rpos != peeked[1]:
            return
        self._rpos = peeked[2]
        self._consumed += peeked[3]
        self.counters["replayed"] += peeked[3]
        seg = self._segments[0]
        if self._rpos >= seg.end:  # all of it written to carbon: delete it now
            if seg is self._segments[-1]:
                self._seal()
            self._drop_segment(seg)

    # -- durability

    def tick(self, now: float) -> float:
        """fsync what was written if the sync interval passed; seconds until the next sync."""
        if not self.is_open:
            return 3600.0
        due = self._last_sync + self.sync_interval
        if now < due:
            return due - now
        self.sync()
        return self.sync_interval

    def sync(self) -> None:
        self._last_sync = self._clock()
        if self._dirty and self._wfd is not None:
            try:
                self._os_fsync(self._wfd)
            except OSError as exc:
                self._write_failed(exc)
                return
        self._dirty = False
        if self._dir_dirty:
            try:
                dfd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass
            self._dir_dirty = False
        cursor = (self._rseq, self._rpos) if self._segments else (self._next_seq, 0)
        if cursor != self._cursor_saved:
            self._save_cursor(cursor)

    def _save_cursor(self, cursor: tuple[int, int]) -> None:
        path = os.path.join(self.directory, "cursor")
        raw = struct.pack("<QQ", *cursor)
        raw += struct.pack("<I", zlib.crc32(raw))
        try:
            _unlink_quietly(path + ".tmp")  # a torn save's leftover, or something planted
            fd = os.open(path + ".tmp", os.O_WRONLY | _NEW_FILE, FILE_MODE)
            try:
                self._os_write(fd, raw)
                self._os_fsync(fd)
            finally:
                os.close(fd)
            os.replace(path + ".tmp", path)
            self._cursor_saved = cursor
        except OSError as exc:
            self.counters["spool_errors"] += 1
            log.error("%s: saving the spool cursor failed: %s", self.name, exc)

    _unlink = staticmethod(_unlink_quietly)
