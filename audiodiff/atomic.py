"""Write a file completely or not at all: temp file in the same folder, then rename.

Every output file of the package (audio, checkpoints, mels, reports, JSON, caches) is
written through `atomic_path`, so a full disk, a missing permission or a killed process
leaves the target as it was and no partial or temp file beside it, and the user sees
one line (`OutputError`) naming the file instead of the writer's traceback. The
training log is appended to with `append_text` (all of a line or none); TensorBoard's
event files are its own. `check_writable` tests an output folder before any work.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audiodiff.errors import OutputError, first_line

# Causes that free space cannot be the reason for: their message says it all.
_CLEAR = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
          errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True,
                write_errors: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and renamed onto `path`.

    `fsync=False` skips the flush to disk (the rename is still atomic): for thousands of
    small files that can be rebuilt, such as the resampled cache, where one fsync per
    file made writing 10x slower.

    On any error (or KeyboardInterrupt) the temp file is removed and `path` is untouched.
    An OSError (a full disk, no permission, a read-only or missing folder), or one of
    `write_errors` (what a writer raises for a failed write that is not an OSError, e.g.
    torch.save's RuntimeError), becomes an `OutputError`:
    one line naming `path` and the cause. The result gets the usual permissions (0666
    less the umask), unlike mkstemp's 0600.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, *write_errors) as exc:
        _remove(tmp)
        raise OutputError(f"{path}: cannot write ({write_failure(exc, path)})") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)


def write_failure(exc: BaseException, path: Path) -> str:
    """Why writing `path` failed, in a few words: the OS's reason (e.g. 'No space left on
    device'), else the writer's first line, with the free space where the disk may be full."""
    if getattr(exc, "errno", None) in (errno.EEXIST, errno.ENOTDIR):  # mkdir met a file on the way
        blocker = _file_in_the_way(path.parent)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:  # torch.save's C++ writer prefixes the source line of its check: drop it
        first = first_line(exc)
        reason = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", first)[:160] or type(exc).__name__
    if getattr(exc, "errno", None) in _CLEAR:
        return reason
    free = free_space(path.parent)
    return reason if free is None else f"{reason}; {format_bytes(free)} free on its disk"


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing path at or above `folder` if it is not a folder, else None."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def free_space(folder: Path) -> int | None:
    """Bytes free to this user on the file system of `folder` (its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(candidate).free
            return None
    return None


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB': bytes in the largest binary unit that keeps the number >= 1."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # not reached


def check_writable(folder: str | Path) -> None:
    """Fail now, with an OutputError naming `folder`, if files cannot be created in it:
    checked before any work, so a long job does not end in an unwritable output. A
    missing folder is not created: its nearest existing parent must be a writable folder.
    A full disk can still fail the write itself (see atomic_path)."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise OutputError(f"{folder}: cannot write there ({existing} is a file, not a folder)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".audiodiff-write-test.", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write there ({write_failure(exc, existing / 'x')})") from None


def append_text(path: str | Path, text: str) -> None:
    """Append `text` to a log file (created if missing), all of it or none: a write cut
    short (a full disk) is truncated away, and the OSError becomes an OutputError naming
    the file, so the log never ends in half a line."""
    path = Path(path)
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({write_failure(exc, path)})") from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written == 0:  # a regular file takes at least a byte unless the disk is full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise OutputError(f"{path}: cannot write ({write_failure(exc, path)})") from None
    finally:
        os.close(fd)
