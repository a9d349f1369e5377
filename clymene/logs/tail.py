"""Tailing log files: reading lines, following rotation, remembering identity.

A `FileTail` follows one path. It reads whole lines only (an unterminated last line
waits for its newline), and handles the ways kubelet and logrotate rotate files:

- rename and create: the path now names another inode; the old file is read to its end
  first (it is still open), then the new file from its start;
- copytruncate: same inode, size below our offset: read again from the start;
- deleted while open: the open file is read to its end, then the tail ends.

`position()` says how far lines were handed out: (offset, dev, ino) of the file being
read. The agent stores it only once the output acknowledged those lines.
"""

from __future__ import annotations

import os
import stat as stat_module

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".z", ".tgz")
READ_SIZE = 256 * 1024


class Entry:
    """One log entry moving through the pipeline (hot path: slots, no validation).

    `labels` may be shared between entries until a stage changes them (`own_labels`);
    `extracted` is the stages' scratch map (None until a stage needs it); `ts` is in
    nanoseconds; `tail`/`start` say where the line began, for held-line bookkeeping."""

    __slots__ = ("labels", "own_labels", "extracted", "line", "ts", "tail", "start")

    def __init__(self, labels: dict[str, str], line: str, ts: int, tail: object,
                 start: int) -> None:
        self.labels = labels
        self.own_labels = False
        self.extracted: dict[str, object] | None = None
        self.line = line
        self.ts = ts
        self.tail = tail
        self.start = start

    def set_label(self, name: str, value: str) -> None:
        if not self.own_labels:
            self.labels = dict(self.labels)
            self.own_labels = True
        self.labels[name] = value

    def del_label(self, name: str) -> None:
        if name in self.labels:
            if not self.own_labels:
                self.labels = dict(self.labels)
                self.own_labels = True
            del self.labels[name]

    def get_extracted(self) -> dict[str, object]:
        # promtail initialises the extracted map with the entry's labels
        if self.extracted is None:
            self.extracted = dict(self.labels)
        return self.extracted


def is_compressed(path: str) -> bool:
    return path.lower().endswith(COMPRESSED_SUFFIXES)


class _Handle:
    __slots__ = ("fd", "dev", "ino", "offset", "rest", "seen")

    def __init__(self, fd: int, dev: int, ino: int, offset: int) -> None:
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.offset = offset  # bytes consumed into complete lines
        self.rest = b""  # bytes read past the last newline
        self.seen = b""  # the last bytes read, to notice a truncated file that regrew


SEEN_BYTES = 32


class FileTail:
    """Follows one path; `read()` returns the new complete lines."""

    def __init__(self, path: str, labels: dict[str, str], now_ns: int) -> None:
        self.path = path
        self.labels = labels  # target labels (with filename), shared by its entries
        self.handles: list[_Handle] = []
        self.done = False  # deleted and read to its end
        self.last_ts = now_ns  # for timestamp fudging
        self.rotations = 0
        self.truncations = 0
        self.finished: list[tuple[int, int, int]] = []  # (dev, ino, offset) of closed files

    # -- opening

    def open_at(self, saved: tuple[int, int, int] | None) -> None:
        """Open the path, resuming from a saved (offset, dev, ino) when it still applies.

        When the saved identity names another file than the path now does (rotated while
        we were down), that file is looked for beside the path (not compressed) and read
        from the saved offset first."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if saved is not None and st is not None:
            offset, dev, ino = saved
            if ino == 0 or (st.st_dev, st.st_ino) == (dev, ino):
                self._open(st, offset if st.st_size >= offset else 0)
                return
            old = _find_inode(os.path.dirname(self.path), dev, ino)
            if old is not None:
                try:
                    ost = os.stat(old)
                    if ost.st_size >= offset:
                        self._open_file(old, ost, offset)
                except OSError:
                    pass
        if st is not None:
            self._open(st, 0)
        elif not self.handles:
            self.done = True

    def _open(self, st: os.stat_result, offset: int) -> None:
        self._open_file(self.path, st, offset)

    def _open_file(self, path: str, st: os.stat_result, offset: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):  # replaced meanwhile
            offset = 0
        os.lseek(fd, offset, os.SEEK_SET)
        self.handles.append(_Handle(fd, fst.st_dev, fst.st_ino, offset))

    def close(self) -> None:
        for h in self.handles:
            os.close(h.fd)
        self.handles.clear()

    # -- reading

    def position(self) -> tuple[int, int, int] | None:
        if not self.handles:
            return None
        h = self.handles[0]
        return (h.offset, h.dev, h.ino)

    def read(self, limit: int = READ_SIZE) -> tuple[list[str], list[int]]:
        """New complete lines (without their newline) and the byte offset where each
        began. Follows rotation and truncation when the current file is at its end."""
        if not self.handles:
            if self.done:
                return [], []
            self._check_path()
            if not self.handles:
                return [], []
        h = self.handles[0]
        if h.seen:
            # copytruncate, even when the file grew past our offset again: the bytes we
            # read last are no longer there.
            pos = h.offset + len(h.rest)
            if os.pread(h.fd, len(h.seen), pos - len(h.seen)) != h.seen:
                self._truncated(h)
        data = os.read(h.fd, limit)
        if data:
            h.seen = (h.seen + data)[-SEEN_BYTES:] if len(data) < SEEN_BYTES \
                else data[-SEEN_BYTES:]
        if not data:
            start = h.offset
            self._at_end(h)
            rest = self.take_rest()
            if rest is not None:
                return [rest], [start]
            if self.handles and self.handles[0] is not h:
                return self.read(limit)
            return [], []
        if h.rest:
            data = h.rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            h.rest = data
            return [], []
        h.rest = data[cut + 1:]
        return self._split(h, data[:cut])

    def _split(self, h: _Handle, complete: bytes) -> tuple[list[str], list[int]]:
        text = complete.decode("utf-8", "replace")
        lines = text.split("\n")
        starts = []
        pos = h.offset
        append = starts.append
        if len(text) == len(complete):  # ASCII: characters are bytes
            for line in lines:
                append(pos)
                pos += len(line) + 1
        else:
            for line in lines:
                append(pos)
                pos += len(line.encode("utf-8", "surrogateescape")) + 1
            pos = h.offset + len(complete) + 1
        h.offset = pos
        return lines, starts

    def _at_end(self, h: _Handle) -> None:
        """The current file gave nothing: has it been rotated, truncated or deleted?"""
        if len(self.handles) > 1:
            self._finish(h)  # an older file read to its end: go on with the next
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (h.dev, h.ino):
            if st.st_size < h.offset + len(h.rest):  # copytruncate
                self._truncated(h)
            return
        # Renamed away or deleted: this file ends here (one more look for bytes written
        # between our read and the stat; the new file waits behind the old one).
        if os.fstat(h.fd).st_size > h.offset + len(h.rest):
            return
        if st is None:
            if os.fstat(h.fd).st_nlink > 0:
                return  # renamed, its successor not created yet: keep reading it
            self._finish(h)  # deleted, and read to its end
            self.done = not self.handles
            return
        self.rotations += 1
        try:
            self._open(st, 0)
        except FileNotFoundError:
            return

    def _truncated(self, h: _Handle) -> None:
        self.truncations += 1
        os.lseek(h.fd, 0, os.SEEK_SET)
        h.offset = 0
        h.rest = b""
        h.seen = b""

    def _finish(self, h: _Handle) -> None:
        """Close a handle read to its end; an unterminated last line is handed out by
        `take_rest` before the handle goes."""
        self.pending_rest = h.rest
        self.finished.append((h.dev, h.ino, h.offset + len(h.rest)))
        h.rest = b""
        os.close(h.fd)
        self.handles.remove(h)

    pending_rest = b""

    def take_rest(self) -> str | None:
        """The unterminated last line of a file that ended (rotated or deleted)."""
        rest = self.pending_rest
        if not rest:
            return None
        self.pending_rest = b""
        return rest.decode("utf-8", "replace")

    def _check_path(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        self._open(st, 0)


def _find_inode(directory: str, dev: int, ino: int) -> str | None:
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in names:
        path = os.path.join(directory, name)
        if is_compressed(path):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_ino == ino and st.st_dev == dev and stat_module.S_ISREG(st.st_mode):
            return path
    return None
