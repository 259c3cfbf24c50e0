"""Reading and writing tensor files that a user may hand us: never unpickle code, never leave half a file.

``safe_load`` is the one ``torch.load`` of the package. It reads with ``weights_only=True`` (PyTorch's
restricted unpickler: tensors, containers, numbers and strings, nothing callable) and allow-lists the few
plain-data classes a DeepSpeed checkpoint holds beyond those (:data:`SAFE_GLOBALS`). A file that asks for
anything else - the way a crafted pickle reaches ``os.system`` - is refused before any of it runs.

``write_atomic`` writes through a temporary file and ``os.replace``: the target is either the old file or the
complete new one. A write that fails (disk full, quota, I/O error) removes the temporary file and raises
:class:`WriteError` naming the path, the bytes the file needed and the free space left. ``save_tensors`` and
``write_json`` are the tensor-file and JSON-file writers built on it.

This module stands apart (it imports torch only, and only inside the functions that read or write tensors), so
the data, model, engine and evaluation layers all use it.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
from typing import Any, Callable, IO, List, Optional


class UnsafeFileError(ValueError):
    """A tensor file that is corrupt, truncated, or asks to run code when unpickled (the message names it)."""


class WriteError(OSError):
    """A file could not be written (the message names the path, the bytes needed and the free space)."""


def _safe_globals() -> List[Any]:
    """Plain-data classes found in DeepSpeed checkpoints (version strings, ZeRO stage enum, loss-scaler
    settings, argparse-free config fragments). None of them runs code when rebuilt from a pickle."""
    found: List[Any] = []
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum

        found.append(ZeroStageEnum)
    except Exception:  # deepspeed is an extra; files without its classes still load
        pass
    try:
        from deepspeed.runtime.fp16.loss_scaler import LossScaler, DynamicLossScaler

        found += [LossScaler, DynamicLossScaler]
    except Exception:
        pass
    try:
        from deepspeed.utils.tensor_fragment import fragment_address

        found.append(fragment_address)
    except Exception:
        pass
    return found


def safe_load(path: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the allow-listed DeepSpeed classes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file needs a class outside the allow-list (possible code execution: nothing of
            it ran), or it is not a readable PyTorch file (truncated, zeroed, not a checkpoint); the message
            names the file.
    """
    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(err))
        if not found and "weights only" not in str(err).lower():  # a damaged file, not a refused one
            raise UnsafeFileError(f"{path}: not a readable PyTorch file ({type(err).__name__}: {err})") from None
        what = f"it asks for {found.group(1)}" if found else "it is not plain tensor data"
        raise UnsafeFileError(
            f"{path}: refused to load: {what}. A checkpoint that needs more than tensors, numbers, strings and "
            "the allow-listed DeepSpeed classes may run code when loaded; nothing of it ran. Only load files you "
            "trust through other means") from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, AttributeError, TypeError,
            UnicodeDecodeError) as err:
        raise UnsafeFileError(f"{path}: not a readable PyTorch file ({type(err).__name__}: {err})") from None


def sha256(path: str) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def free_bytes(path: str) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return -1


def _open_for_write(path: str) -> IO[bytes]:
    """The file object every write goes through (tests replace it with a writer that fails on purpose)."""
    return open(path, "wb")


def write_atomic(path: str, write: Callable[[IO[bytes]], None], needed_bytes: Optional[int] = None,
                 per_process: bool = False) -> None:
    """Write ``path`` through ``write(file)`` into ``path + ".tmp"``, fsync, then ``os.replace``.

    ``per_process``: the temporary file is ``path + ".<pid>.tmp"``, for files that several processes (data
    loader workers, ranks) may write at once with the same content (cache entries).

    ``needed_bytes`` (an estimate) is compared with the free space first: a file that cannot fit fails before
    a byte is written.

    Raises:
        WriteError: the file could not be written (no space, quota, I/O error); the temporary file is removed
            and ``path`` is untouched. The message names ``path``, the bytes needed and the free space.
    """
    tmp = f"{path}.{os.getpid()}.tmp" if per_process else path + ".tmp"
    free = free_bytes(os.path.dirname(path) or ".")
    if needed_bytes is not None and 0 <= free < needed_bytes:
        raise WriteError(errno.ENOSPC, f"cannot write {path}: it needs about {needed_bytes} bytes and "
                                       f"{free} bytes are free on that file system (no space left on device)")
    try:
        with _open_for_write(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        try:
            os.remove(tmp)
        except OSError:
            pass
        cause = _os_error(err) or err  # torch's writer wraps the file's OSError in a RuntimeError
        code = getattr(cause, "errno", None) or errno.EIO
        why = "no space left on device" if code in (errno.ENOSPC, errno.EDQUOT) else (
            getattr(cause, "strerror", None) or str(cause))
        need = f"about {needed_bytes}" if needed_bytes is not None else f"more than {written}"
        raise WriteError(code, f"cannot write {path}: {why}; the file needs {need} bytes, "
                               f"{free_bytes(path)} bytes are free on that file system; the partial file "
                               "was removed") from err


def append_record(path: str, data: bytes) -> None:
    """Append ``data`` (one record: a JSON line, a TensorBoard event) to ``path`` whole or not at all.

    Raises:
        WriteError: the append failed (disk full, quota, I/O error); the file is cut back to its size before
            the append (no torn record). The message names ``path``, the record's bytes and the free space.
    """
    size = os.path.getsize(path) if os.path.exists(path) else 0
    try:
        with _open_for_append(path) as f:
            f.write(data)
            f.flush()
    except OSError as err:
        try:
            os.truncate(path, size)
        except OSError:
            pass
        why = "no space left on device" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err))
        raise WriteError(err.errno or errno.EIO, f"cannot write {path}: {why}; the record needs {len(data)} bytes, "
                                                 f"{free_bytes(path)} bytes are free on that file system; the "
                                                 "partial record was removed") from err


def _open_for_append(path: str) -> IO[bytes]:
    """The file object every append goes through (tests replace it with a writer that fails on purpose)."""
    return open(path, "ab")


def write_json(path: str, obj: Any, indent: Optional[int] = 1, allow_nan: bool = False) -> None:
    """``obj`` as JSON (``indent`` spaces per level, a final newline) written to ``path`` through :func:`write_atomic`.

    ``allow_nan=False`` writes strict JSON (RFC 8259 has no NaN / Infinity); ``True`` writes Python's bare
    ``NaN`` / ``Infinity`` tokens, which Python's ``json`` reads back but strict parsers refuse.

    Raises:
        ValueError: ``obj`` holds a NaN or infinite float and ``allow_nan`` is false (nothing is written).
        TypeError: ``obj`` holds something JSON cannot represent (nothing is written).
        WriteError: the file could not be written; ``path`` is untouched and no partial file is left.
    """
    data = (json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n").encode()
    write_atomic(path, lambda f: f.write(data), needed_bytes=len(data))


def _os_error(err: BaseException) -> Optional[OSError]:
    """The first OSError with an errno in an exception's cause / context chain."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno:
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensor storages inside a nested state (each storage counted once): the size a
    ``torch.save`` of it needs, less the small pickle overhead."""
    import torch

    seen, total, stack = set(), 0, [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            key = (st.data_ptr(), st.nbytes())
            if key not in seen:
                seen.add(key)
                total += st.nbytes()
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return total


def save_tensors(obj: Any, path: str, zipfile: bool = True) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic` (raises :class:`WriteError`)."""
    import torch

    write_atomic(path, lambda f: torch.save(obj, f, _use_new_zipfile_serialization=zipfile),
                 needed_bytes=tensor_bytes(obj))
