"""Train with a SIGKILL planted at a chosen point: ``python tests/fault_train.py KIND N MODE -- TRAIN ARGS``.

KIND "write": the N-th file the trainer writes through ``fastclap.serialization`` (checkpoint files, their
fingerprint and manifest, ``latest``, config.json, the export); MODE "before" kills when the file is opened,
"mid" after half of its first chunk is written (a torn file). KIND "step": after the N-th metrics record is
written (between steps). N = 0: no kill. The test process sends nothing; the trainer kills itself, so the
point is exact and the result does not depend on timing. KIND "disk": the disk is full from the N-th record
appended during training on (metrics.jsonl lines, TensorBoard events; MODE "-"): the trainer must stop with
one ``error:`` line (exit status 2) after a checkpoint.
"""
import errno
import os
import signal
import sys


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class WrappedFile:
    """A file opened for writing (or the open file ``f``) whose ``write`` a subclass replaces (the faults of the
    tests)."""

    def __init__(self, path, mode="wb", f=None):
        self._f = f if f is not None else open(path, mode)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


class FullDisk(WrappedFile):
    """A file opened for writing that takes ``budget`` bytes (or characters), then fails like a full disk
    (ENOSPC)."""

    def __init__(self, path, budget, mode="wb", f=None):
        super().__init__(path, mode, f)
        self.left = budget

    def write(self, data):
        data = data if isinstance(data, str) else bytes(data)
        if len(data) > self.left:
            self._f.write(data[:self.left])
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self._f.write(data)


def fill_disk_under(monkeypatch, folder, budget=0, name_contains="", after=0):
    """Every file opened for writing or appending under ``folder`` (whose name contains ``name_contains``) -
    through ``open`` itself, so by any writer: numpy, json, csv, TensorBoard - takes ``budget`` bytes, then
    fails with ENOSPC; the first ``after`` such opens write normally. Returns the list of paths it hit."""
    import builtins
    import io

    real_open, hits, folder = builtins.open, [], os.path.abspath(str(folder))

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            path = os.path.abspath(os.fsdecode(file))
            if path.startswith(folder + os.sep) and name_contains in os.path.basename(path):
                hits.append(path)
                if len(hits) > after:
                    return FullDisk(path, budget, f=f)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return hits


class _TornFile(WrappedFile):
    def write(self, data):
        data = bytes(data)
        self._f.write(data[: max(1, len(data) // 2)])
        self._f.flush()
        os.fsync(self._f.fileno())
        _die()


def plant(kind, n, mode):
    import fastclap.serialization as serialization
    from fastclap.engine import metrics

    count = [0]
    if kind == "write":
        real = serialization._open_for_write

        def opener(path):
            count[0] += 1
            if count[0] == n:
                if mode == "before":
                    _die()
                return _TornFile(path)
            return real(path)

        serialization._open_for_write = opener
    elif kind == "step":
        real_write = metrics.MetricsWriter.write

        def write(self, record):
            real_write(self, record)
            if "loss" in record:
                count[0] += 1
                if count[0] == n:
                    _die()

        metrics.MetricsWriter.write = write
    elif kind == "disk":
        def full_from_nth(path):
            count[0] += 1
            return FullDisk(path, 0, mode="ab") if count[0] >= n else open(path, "ab")

        serialization._open_for_append = full_from_nth


if __name__ == "__main__":
    # run as a script: Python put tests/ first on sys.path; the package comes from the installed fastclap
    kind, n, mode, sep, *train_args = sys.argv[1:]
    assert sep == "--", "usage: fault_train.py KIND N MODE -- TRAIN ARGS"
    plant(kind, int(n), mode)
    from fastclap.train import cli

    sys.exit(cli(train_args))  # user errors (a full disk) as `error: ...` and exit status 2
