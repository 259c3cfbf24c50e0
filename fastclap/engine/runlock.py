"""One trainer per run directory: an ``fcntl.flock`` on the run directory itself, held for the life of the run.

Two trainers writing one directory interleave their metrics, race on the same temporary files and leave an
export and a last checkpoint from different runs. Rank 0 takes an exclusive, non-blocking lock on the run
directory (an open descriptor of the directory, not of a file in it: deleting a file cannot drop the lock)
before anything in the directory is touched, and writes its pid into ``<run_dir>/run.lock`` for the message; a
second trainer fails at once, naming that pid. The kernel drops the lock when its process ends, however it
ends (SIGKILL included), so the file a killed run leaves behind does not block ``--resume``.
"""
from __future__ import annotations

import fcntl
import os
from typing import Optional

from ..serialization import WriteError, write_atomic
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
        fd = os.open(self.run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    holder = f.read(64).strip() or "unknown"
            except OSError:
                holder = f"unknown: {self.path} was deleted"
            raise RunLockedError(
                f"run directory {self.run_dir} is in use by another trainer (pid {holder}, lock {self.path}): "
                "wait for it to finish, stop it, or choose another fastclap.run.dir") from None
        self._fd = fd
        try:  # the pid only names the holder in the other trainer's message
            write_atomic(self.path, lambda f: f.write(f"{os.getpid()}\n".encode()))
        except WriteError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass
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
