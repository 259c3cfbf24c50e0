"""The files of one checkpoint: DeepSpeed's tensor files read and written safely, and the manifest.

DeepSpeed reads and writes its checkpoint files through a "checkpoint engine" object; :func:`install_safe_io`
swaps in one that loads with ``weights_only=True`` (:func:`fastclap.serialization.safe_load`) and writes through
a temporary file (:func:`fastclap.serialization.save_tensors`: a failed write names the path, the bytes and
the free space, and leaves no partial file).

A checkpoint directory is complete when its ``manifest.json`` - written last - lists every file with its size
and SHA-256, and every file still matches. :func:`verify` reads a checkpoint back against its manifest and
says what is wrong (missing, truncated, changed file; no manifest: the write never finished).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

from ..serialization import UnsafeFileError, safe_load, save_tensors, sha256, write_json

MANIFEST = "manifest.json"
FINGERPRINT = "fingerprint.json"  # the run's settings (fastclap.engine.fingerprint), written before the manifest
MANIFEST_FORMAT = "fastclap-checkpoint/1"


class CheckpointError(UnsafeFileError):
    """A checkpoint that cannot be used: incomplete, changed since it was written, or unsafe to unpickle."""


class SafeCheckpointEngine:
    """DeepSpeed checkpoint engine wrapper: safe ``load``, atomic ``save``; everything else is the wrapped
    engine's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def load(self, path: str, map_location: Any = None) -> Any:
        return safe_load(path, map_location=map_location if map_location is not None else "cpu")

    def save(self, state_dict: Any, path: str) -> None:
        save_tensors(state_dict, path, zipfile=bool(getattr(self._inner, "zipfile_serialization", True)))


def install_safe_io(engine: Any) -> None:
    """Route every checkpoint file of a DeepSpeed engine through :class:`SafeCheckpointEngine`."""
    current = getattr(engine, "checkpoint_engine", None)
    if current is not None and not isinstance(current, SafeCheckpointEngine):
        engine.checkpoint_engine = SafeCheckpointEngine(current)


def write_manifest(step_dir: str, tag: str) -> Dict[str, Any]:
    """List every file of ``step_dir`` (name, bytes, SHA-256) in ``step_dir/manifest.json``; call it last."""
    files = {}
    for name in sorted(os.listdir(step_dir)):
        p = os.path.join(step_dir, name)
        if name == MANIFEST or name.endswith(".tmp") or not os.path.isfile(p):
            continue
        files[name] = {"bytes": os.path.getsize(p), "sha256": sha256(p)}
    manifest = {"format": MANIFEST_FORMAT, "tag": tag, "files": files}
    write_json(os.path.join(step_dir, MANIFEST), manifest)
    return manifest


def verify(step_dir: str) -> Dict[str, Any]:
    """Read a checkpoint directory back against its manifest; returns the manifest.

    Raises:
        CheckpointError: the directory or its manifest is missing or unreadable, the manifest's tag is not the
            directory's name (a checkpoint copied or renamed to another step), ``fingerprint.json`` is missing,
            or a listed file is missing, has another size or another SHA-256; the message names the file.
    """
    if not os.path.isdir(step_dir):
        raise CheckpointError(f"{step_dir}: no such checkpoint directory")
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: missing (the checkpoint was not completely written)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict) or not files:
            raise ValueError("not a fastclap checkpoint manifest")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable manifest ({err})") from None
    folder = os.path.basename(os.path.normpath(step_dir))
    if manifest.get("tag") != folder:
        raise CheckpointError(f"{path}: written for checkpoint {manifest.get('tag')!r}, but the folder is {folder} "
                              "(copied or renamed from another step: its step, data position and schedule are not "
                              f"{folder}'s)")
    if not os.path.isfile(os.path.join(step_dir, FINGERPRINT)):
        raise CheckpointError(f"{os.path.join(step_dir, FINGERPRINT)}: fingerprint missing (the settings the "
                              "checkpoint was trained with cannot be compared with the config)")
    for name, entry in files.items():
        p = os.path.join(step_dir, name)
        if os.path.basename(name) != name or not os.path.isfile(p):
            raise CheckpointError(f"{p}: listed in the manifest but missing")
        size = os.path.getsize(p)
        if size != entry.get("bytes"):
            raise CheckpointError(f"{p}: {size} bytes, the manifest says {entry.get('bytes')}")
        if sha256(p) != entry.get("sha256"):
            raise CheckpointError(f"{p}: SHA-256 differs from the manifest (the file changed after it was written)")
    return manifest
