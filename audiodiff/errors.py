"""The one exception family users see.

Every error that is the user's to fix (a bad recipe key, a missing file, unreadable
audio, a mel of the wrong shape, a foreign checkpoint, a full disk, a locked run
folder) is raised as an `AudiodiffError` whose message is one line naming the file or
key. The CLI prints that line and exits with code 2; API users can catch the class.
"""
from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of `exc`'s message (at most `limit` characters), or its class name
    when the message is empty: how another library's error is quoted inside one of ours."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class AudiodiffError(Exception):
    """A problem with the user's input, reported as one line."""


class RecipeError(AudiodiffError):
    """A recipe file or `--set` override is invalid."""


class AudioError(AudiodiffError):
    """An audio or mel input cannot be read or does not fit the model."""


class CheckpointError(AudiodiffError):
    """A checkpoint is missing, corrupt, or not an audiodiff checkpoint."""


class TrainingStopped(AudiodiffError):
    """Training cannot go on (e.g. too many non-finite losses in a row); the last checkpoint is intact."""


class OutputError(AudiodiffError):
    """An output file cannot be written (a full disk, no permission, a read-only folder);
    the file is left as it was, with no partial or temp file beside it."""


class RunFolderLocked(AudiodiffError):
    """Another training holds the run folder (see run_lock.py)."""


class MemoryBudgetError(AudiodiffError):
    """A requested output cannot fit in this machine's memory (see memory.py)."""
