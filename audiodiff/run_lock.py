"""One training per run folder: an OS lock held while a training writes to it.

`lock_run_folder(out)` takes an exclusive `flock` on `out/train.lock` and writes the
holder's pid and host into it; a second training on the same folder gets a one-line
`RunFolderLocked` at once, naming the folder and that process. The kernel releases the
lock when the process ends, however it ends (a crash, `kill -9`, a power cut), so a
dead run never leaves a stale lock: the file may stay, its lock does not. A run folder
the lock had to create is removed again on release if the run wrote nothing there, so a
refused run (a bad --init) leaves no folder behind. On network file systems Linux maps
`flock` to NFS byte-range locks, which hold across hosts. Where `fcntl` does not exist
(Windows) or the file system has no locks, the folder is not locked.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from audiodiff.atomic import write_failure
from audiodiff.errors import OutputError, RunFolderLocked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = "train.lock"


class RunLock:
    """A held run-folder lock; `release()` (or leaving a `with` block) frees it."""

    def __init__(self, path: Path, fd: int | None, created: tuple[Path, ...] = ()):
        self.path, self._fd = path, fd
        self._created = created  # folders the lock made, deepest first: removed on release if still empty

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Free the lock and empty the file (so it names no one); idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            if self._created and [p.name for p in self.path.parent.iterdir()] == [LOCK_NAME]:
                self.path.unlink()  # a folder this lock made, where the run wrote nothing
                for folder in self._created:
                    folder.rmdir()  # stops (OSError) at the first that is not empty
        os.close(fd)  # closing the last descriptor of the open file frees the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run_folder(folder: str | Path) -> RunLock:
    """Lock `folder` (created if missing) for one training; RunFolderLocked, naming the
    folder and the holder (pid, host), if another process holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    created = tuple(p for p in (folder, *folder.parents) if not p.exists())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the run folder's lock file {LOCK_NAME} "
                          f"({write_failure(exc, path)})") from None
    if fcntl is None:
        os.close(fd)
        return RunLock(path, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderLocked(
                f"{folder}: another training is writing to this run folder ({holder}); wait for it to end "
                f"or stop it, or train into another --out-dir") from None
        return RunLock(path, None)  # a file system without locks (ENOLCK, EINVAL): go on unlocked
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    return RunLock(path, fd, created)


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says ('pid N on host H'), or a plain description."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text if text.startswith("pid ") else "another process; it has not written its pid yet"
