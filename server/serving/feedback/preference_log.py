"""The preference file: JSONL that judgements are appended to and training reads.

Appends never interleave or tear a line another writer sees: a judgement's lines go out in one
`write` on a descriptor opened O_APPEND (the kernel puts each such write at the end whole, also
against other processes appending to the same local file), under a lock for this process's
threads and an advisory file lock (flock) for other processes, then fsync, so a judgement the
page reported as recorded survives a crash. The file lock keeps the torn-line check honest: a
reader may see another process's large write half done, and would take its missing newline for
a torn line.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path


class PreferenceLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, rows: list[dict]) -> None:
        """Append `rows`, one JSON line each, all in one write; blocking (call it in a thread)."""
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A line torn by a crash or a hand edit: ours starts on a line of its own
                    # (the torn one stays one bad row, instead of taking our judgement with it).
                    data = b"\n" + data
                written = os.write(fd, data)
                if written != len(data):  # a full disk: take the partial line back out
                    os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - written)
                    raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # the file's directory entry is data too
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
