"""File storage: one JSON line per sample, for small set-ups and debugging.

Each sample becomes a line of `<directory>/samples.jsonl`:

    {"name":"up","labels":{"instance":"a:9100","job":"node"},"value":1.0,"timestamp":1700000000000}

`labels` holds every label but `__name__` (sorted by name), `timestamp` is in
milliseconds. JSON has no NaN or infinity, so those values are written as strings:
"NaN", "+Inf", "-Inf", and a Prometheus staleness marker (the NaN with bits
0x7ff0000000000002) as "stale". Every other value is a JSON number.

The file is rotated by size: when a batch would take it past `max_bytes` it becomes
`samples.jsonl.1` (`.1` becomes `.2`, ...), and at most `max_files` files are kept in
all, the live one included; the oldest is deleted. Several processes may append to the
same directory at once: each batch is one `os.write` of whole lines on an O_APPEND
descriptor, made while holding an exclusive `fcntl.flock` on `samples.jsonl.lock`
(the same lock guards the size check and the rotation), and a writer whose file was
rotated by another reopens the live one; no line is split, interleaved or lost.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import struct
import threading

from clymene import stats
from clymene.storage import Labels, Sample, WriteError

FILE_NAME = "samples.jsonl"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_FILES = 10
_STALE_BYTES = struct.pack("<Q", 0x7FF0000000000002)
_pack_double = struct.Struct("<d").pack
_PREFIX_CACHE_MAX = 100_000
# Errors a later attempt may get past (the disk fills up and is freed again, ...).
_TRANSIENT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR}


def _value_json(value: float) -> str:
    if value != value:
        return '"stale"' if _pack_double(value) == _STALE_BYTES else '"NaN"'
    if math.isinf(value):
        return '"+Inf"' if value > 0 else '"-Inf"'
    return repr(float(value))


class FileStorage:
    """Appends samples as JSON lines to `<directory>/samples.jsonl`, rotated by size."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"file storage max_bytes must be positive, got {max_bytes}")
        if max_files < 1:
            raise ValueError(f"file storage max_files must be at least 1, got {max_files}")
        self.name = "file"
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, FILE_NAME)
        self.max_bytes = int(max_bytes)
        self.max_files = int(max_files)
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.Lock()
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._prefixes: dict[Labels, str] = {}

    # -- encoding

    def _prefix(self, labels: Labels) -> str:
        prefix = self._prefixes.get(labels)
        if prefix is None:
            name = ""
            pairs = []
            for key, value in labels:
                if key == "__name__":
                    name = value
                else:
                    pairs.append(f"{json.dumps(key)}:{json.dumps(value)}")
            prefix = f'{{"name":{json.dumps(name)},"labels":{{{",".join(pairs)}}},"value":'
            if len(self._prefixes) >= _PREFIX_CACHE_MAX:
                self._prefixes.clear()
            self._prefixes[labels] = prefix
        return prefix

    def encode(self, batch: list[Sample]) -> bytes:
        """The JSON lines of a batch, as written to the file."""
        prefix = self._prefix
        lines = [
            f'{prefix(labels)}{_value_json(value)},"timestamp":{int(ts)}}}\n'
            for labels, value, ts in batch
        ]
        return "".join(lines).encode("utf-8")

    # -- writing

    def write(self, batch: list[Sample], deadline: float) -> None:
        # A local append does not wait on anything worth retrying, so the deadline
        # is not used.
        if not batch:
            return
        data = self.encode(batch)
        try:
            with self._lock:
                self._append(data)
        except OSError as exc:
            retryable = exc.errno in _TRANSIENT
            stats.inc(
                "clymene_storage_samples_dropped_total",
                len(batch),
                storage=self.name,
                reason="io_error",
            )
            raise WriteError(f"file: cannot write {self.path}: {exc}", retryable=retryable) from exc
        stats.inc("clymene_storage_samples_written_total", len(batch), storage=self.name)

    def _append(self, data: bytes) -> None:
        # Exclusive for the size check, the rotation and the write together, so the
        # files stay within max_bytes even with several writers; held for one write().
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            fd = self._current()
            size = os.fstat(fd).st_size
            if size and size + len(data) > self.max_bytes:
                self._rotate()
                fd = self._current()
            self._write_all(fd, data)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        # One write() of whole lines; a regular file takes it all at once unless the
        # disk is full, which the loop then reports as an error.
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _current(self) -> int:
        """The descriptor of the live file, reopened when another process rotated it."""
        try:
            st = os.stat(self.path)
            ino: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            ino = None
        if self._fd is not None and ino == self._ino:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)
        return fd

    def _rotate(self) -> None:
        """samples.jsonl -> .1 -> .2 ...; the file past max_files - 1 is deleted."""
        keep = self.max_files - 1
        if keep == 0:
            os.unlink(self.path)
            return
        oldest = f"{self.path}.{keep}"
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.rename(src, f"{self.path}.{i + 1}")
        os.rename(self.path, f"{self.path}.1")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
