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
from fault_train import FullDisk, fill_disk_under
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


def _no_temporary_files(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if "tmp" in f]


def test_feature_cache_on_a_full_disk_names_the_entry_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from fastclap.data.features import process_file
    from fastclap.data.cli import SAMPLE_DIR

    clip = sorted(str(p) for p in SAMPLE_DIR.glob("*.flac"))[0]
    cache = tmp_path / "cache"
    hits = fill_disk_under(monkeypatch, cache, budget=100)
    with pytest.raises(WriteError) as err:
        process_file(clip, str(cache), use_shipped=True)
    msg = str(err.value)
    assert hits and re.search(rf"cannot write {re.escape(str(cache))}/\w\w/\w+\.[^ ]+\.npz: no space left on device; "
                              r"the file needs about \d+ bytes, -?\d+ bytes are free", msg), msg
    assert _no_temporary_files(cache) == []
    monkeypatch.undo()
    assert process_file(clip, str(cache), use_shipped=True).sha256  # space again: the entry is written


def test_prepared_files_on_a_full_disk_name_the_file(tmp_path, monkeypatch):
    from fastclap.data.cli import read_corpus
    from fastclap.data.prepare import prepare

    rows, root = read_corpus("sample", None)
    out = tmp_path / "prepared"
    fill_disk_under(monkeypatch, out, budget=10, name_contains="lld.npy")
    with pytest.raises(WriteError, match=rf"cannot write {re.escape(str(out / 'lld.npy'))}: no space left on device"):
        prepare(rows, out, corpus="sample", root=root, cache_dir=tmp_path / "cache", workers=1, seed=0, progress=False)
    assert _no_temporary_files(out) == [] and not (out / "meta.json").exists()


@pytest.mark.parametrize("victim,after", [("metrics.jsonl", 2), ("tfevents", 3)])
def test_full_disk_during_training_stops_after_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch, capfd,
                                                                                 reference, victim, after):
    """The 3rd step's metrics line (or TensorBoard event: the 1st event is the file header) hits a full disk:
    the trainer names the file and the bytes, saves a checkpoint of step 3 and stops; --resume ends with the
    uninterrupted run's losses, each step logged once."""
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir)
    cfg["fastclap"]["run"]["tensorboard"] = True
    path = write_config(tmp_path / "c.json", cfg)
    hits = fill_disk_under(monkeypatch, run_dir, budget=0, name_contains=victim, after=after)
    with pytest.raises(WriteError) as err:
        main(["--config", path])
    msg = str(err.value)
    assert re.search(rf"cannot write {re.escape(str(run_dir))}/\S*{victim}\S*: no space left on device; the record "
                     r"needs \d+ bytes, -?\d+ bytes are free", msg), msg
    assert "training stopped after checkpoint step_00000003" in msg and len(hits) == after + 1
    assert read_latest(str(run_dir)) == tag_for(3)
    assert "Traceback" not in capfd.readouterr().err  # no writer thread failing on its own
    assert _no_temporary_files(run_dir) == []
    monkeypatch.undo()
    summary = main(["--config", path, "--resume"])
    assert summary["start_step"] == 3
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert [r["loss"] for r in recs] == pytest.approx(reference, abs=1e-6, rel=0)
    print(f"full disk on {victim} at step 3: named, checkpoint step 3 saved, resumed exactly")


def test_torn_last_metrics_line_is_dropped_at_resume_and_a_torn_middle_line_is_named(tmp_path, capsys, reference):
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir)
    path = write_config(tmp_path / "c.json", cfg)
    main(["--config", path])
    shutil.rmtree(run_dir / "checkpoints" / tag_for(4))
    (run_dir / "checkpoints" / "latest").write_text(tag_for(2))
    metrics = run_dir / "metrics.jsonl"
    good = metrics.read_bytes()
    torn = b'{"step": 5, "epoch": 0, "loss": 1.2'
    metrics.write_bytes(good + torn)
    capsys.readouterr()
    assert main(["--config", path, "--resume"])["start_step"] == 2
    assert f"{metrics} ends in a torn line (line 5, {len(torn)} bytes" in capsys.readouterr().out
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(reference, abs=1e-6, rel=0)

    lines = metrics.read_bytes().split(b"\n")
    metrics.write_bytes(b"\n".join(lines[:1] + [torn] + lines[1:]))
    with pytest.raises(ValueError, match=rf"{re.escape(str(metrics))}, line 2: not a metrics record"):
        main(["--config", path, "--resume-from", "2"])


def test_ge2e_cache_on_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import dataclasses

    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.model.ge2e_cache import ge2e_partials

    prep = prepared_sample()[0]
    small = dataclasses.replace(prep, rows=prep.rows[:3], out_dir=tmp_path)  # 3 clips, the cache in tmp_path
    fill_disk_under(monkeypatch, tmp_path, budget=100, name_contains="ge2e_partials")
    with pytest.raises(WriteError, match=rf"cannot write {re.escape(str(tmp_path))}/ge2e_partials\.\w+\.npz: no "
                                         r"space left on device; the file needs about \d+ bytes"):
        ge2e_partials(small)
    assert os.listdir(tmp_path) == []
