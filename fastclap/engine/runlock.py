"""One trainer per run directory: ``<run_dir>/run.lock``, held with ``fcntl.flock`` for the life of the run.

Two trainers writing one directory interleave their metrics, race on the same temporary files and leave an
export and a last checkpoint from different runs. Rank 0 takes an exclusive, non-blocking lock on the lock
file before anything in the directory is touched and writes its pid into it; a second trainer fails at once,
naming that pid. The kernel drops the lock when its process ends, however it ends (SIGKILL included), so the
file a killed run leaves behind does not block ``--resume``.
"""
from __future__ import annotations

import fcntl
import os
from typing import Optional

from .distributed import all_ranks_true

LOCK_FILE = "run.lock"


class RunLockedError(OSError):
    """Another live process holds the run directory's lock (the message names its pid and the lock file)."""


class RunLock:
    """Context manager holding ``<run_dir>/run.lock`` (a no-op on ranks other than 0).

    Raises (on entry):
        RunLockedError: another process holds the lock.
    """

    def __init__(self, run_dir: str, rank: int = 0) -> None:
        self.run_dir, self.rank = run_dir, rank
        self.path = os.path.join(run_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        if self.rank != 0 or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.run_dir} is in use by another trainer (pid {holder}, lock {self.path}): "
                "wait for it to finish, stop it, or choose another fastclap.run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        """Acquire on rank 0; every rank raises when rank 0 could not (no rank waits for a run that stopped)."""
        error: Optional[RunLockedError] = None
        try:
            self.acquire()
        except RunLockedError as err:
            error = err
        if not all_ranks_true(error is None):
            raise error or RunLockedError(f"run directory {self.run_dir} is in use by another trainer (see rank 0)")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
