"""Disk full and other write errors, injected by a writer that fails after a byte budget (fp32, ZeRO 0 and 2).

A failed write must name the path, the bytes needed and the free space; remove its partial file; leave the
previous checkpoint and `latest` usable; and never publish `latest` before every file of its checkpoint is
written (deterministic: the write of each file of step 4 in turn fails, so a `latest` written too early would
name step 4).
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import fastclap.serialization as serialization
from fastclap.engine.checkpoint import read_latest, tag_for
from fastclap.engine.checkpoint_files import verify
from fastclap.model.export import save_exported
from fastclap.config import ModelConfig
from fastclap.serialization import WriteError
from fastclap.train import main
from fault_train import FullDisk
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS, EVERY = 4, 2


def _cfg(run_dir, stage=0):
    return tiny_config(run_dir, stage=stage, steps=STEPS,
                       run={"checkpoint_every": EVERY, "keep_checkpoints": 0, "export": True})


def _fail_on(monkeypatch, victim, nth=1, budget=64):
    """The ``nth`` write of a file whose path ends with ``victim`` fails after ``budget`` bytes."""
    calls = []

    def opener(path):
        if path[:-len(".tmp")].endswith(victim):
            calls.append(path)
            if len(calls) == nth:
                return FullDisk(path, budget)
        return open(path, "wb")

    monkeypatch.setattr(serialization, "_open_for_write", opener)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    main(["--config", write_config(root / "c.json", _cfg(root / "run"))])
    return [r["loss"] for r in read_metrics(root / "run")]


def _leftovers(run_dir):
    return [os.path.join(d, f) for d, _, files in os.walk(run_dir) for f in files if f.endswith(".tmp")]


STEP4 = os.path.join("checkpoints", tag_for(4))


@pytest.mark.parametrize("stage,victim,nth", [
    (0, os.path.join(STEP4, "mp_rank_00_model_states.pt"), 1),
    (2, os.path.join(STEP4, "zero_pp_rank_0_mp_rank_00_optim_states.pt"), 1),
    (0, os.path.join(STEP4, "fingerprint.json"), 1),
    (0, os.path.join(STEP4, "manifest.json"), 1),
    (0, os.path.join("checkpoints", "latest"), 2),  # the first "latest" (step 2) is written normally
])
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, reference, stage, victim, nth):
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "c.json", _cfg(run_dir, stage))
    hits = _fail_on(monkeypatch, victim, nth, budget=4)
    with pytest.raises(WriteError) as err:
        main(["--config", cfg])
    msg = str(err.value)
    assert "no space left on device" in msg and "bytes are free" in msg and "needs" in msg
    assert len(hits) == nth and f"cannot write {run_dir / victim}: no space left on device" in msg
    assert _leftovers(run_dir) == []  # the partial file was removed
    if victim.endswith("latest"):
        assert read_latest(str(run_dir)) == tag_for(2)
        verify(str(run_dir / "checkpoints" / tag_for(4)))  # complete: a resume may use it
    else:
        assert read_latest(str(run_dir)) == tag_for(2)  # never published before its files
        assert not (run_dir / "checkpoints" / tag_for(4)).exists()  # the unfinished checkpoint is gone
    verify(str(run_dir / "checkpoints" / tag_for(2)))

    monkeypatch.undo()
    summary = main(["--config", cfg, "--resume"])
    assert summary["start_step"] == (4 if victim.endswith("latest") else 2)
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(reference, abs=1e-6, rel=0)
    print(f"disk full writing {os.path.basename(victim)} (ZeRO {stage}): named path, bytes and free space; no partial file; resumed exactly")


def test_a_file_that_cannot_fit_fails_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization, "free_bytes", lambda path: 1000)
    path = tmp_path / "big.pt"
    with pytest.raises(WriteError, match=rf"cannot write {path}: it needs about 40000 bytes and 1000 bytes are free"):
        serialization.save_tensors({"w": torch.zeros(10000)}, str(path))
    assert os.listdir(tmp_path) == []


def test_export_on_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    _fail_on(monkeypatch, os.path.join("export", "model.pt"), budget=1000)
    with pytest.raises(WriteError, match=r"export/model\.pt: no space left on device; the file needs about \d+ bytes"):
        save_exported({"w": torch.randn(1000)}, ModelConfig(), str(tmp_path))
    assert os.listdir(tmp_path / "export") == []


def _tmpfs_available():
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d"], capture_output=True)
    return probe.returncode == 0


TMPFS_SCRIPT = r"""
import os, subprocess, sys, tempfile, torch
from fastclap.serialization import WriteError
d = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], check=True)
open(os.path.join(d, "previous.pt"), "wb").write(b"intact")
from fastclap.serialization import write_atomic
try:  # no size estimate given, so no up-front check: the write itself hits the full disk
    write_atomic(os.path.join(d, "big.pt"), lambda f: torch.save({"w": torch.zeros(1 << 20)}, f))  # 4 MiB, 1 MiB
except WriteError as err:
    print("MESSAGE", err)
print("FILES", sorted(os.listdir(d)))
"""


@pytest.mark.skipif(not _tmpfs_available(), reason="needs unshare with user and mount namespaces (a 1 MiB tmpfs)")
def test_a_real_full_tmpfs_names_path_bytes_and_space():
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", TMPFS_SCRIPT],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "cannot write " in out and "big.pt: no space left on device" in out
    m = re.search(r"the file needs more than (\d+) bytes, (\d+) bytes are free on that file system", out)
    assert m and 0 < int(m.group(2)) <= 1 << 20 and int(m.group(1)) > 0  # free: after the partial file went
    assert "FILES ['previous.pt']" in out  # no partial big.pt or big.pt.tmp; the earlier file is intact
    print("real 1 MiB tmpfs: ENOSPC named the path, the bytes and the free space; no partial file left")


def test_json_files_are_strict_and_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "x.json")
    obj = {"a": [1, 2.5, None], "b": {"c": "d"}}
    serialization.write_json(path, obj)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert json.loads(text) == obj and text.endswith("}\n") and "\n \"a\"" in text  # indent 1 by default
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError):
            serialization.write_json(path, {"a": bad})
    assert json.loads(open(path).read()) == obj
    _fail_on(monkeypatch, "x.json", budget=3)
    with pytest.raises(WriteError, match=re.escape(path)):
        serialization.write_json(path, {"e": list(range(50))}, indent=None)
    assert os.listdir(tmp_path) == ["x.json"] and json.loads(open(path).read()) == obj
