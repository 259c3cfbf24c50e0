"""Hostile checkpoint state: crafted pickles, a `latest` that points elsewhere or at garbage, incomplete and
corrupted checkpoints, --resume-from, and settings changed between a run and its resume (fp32, ZeRO 0 and 2).

One base run (steps 4, checkpoints at 2 and 4, kept) is copied per case; every case that resumes compares its
losses with the base run's (exact fp32 resume: atol 1e-6).
"""
import json
import os
import shutil

import pytest
import torch

from fastclap.engine.checkpoint import FINGERPRINT, read_latest, tag_for
from fastclap.engine.checkpoint_files import CheckpointError, MANIFEST, verify, write_manifest
from fastclap.engine.fingerprint import ConfigChangedError
from fastclap.experiment import load_checkpoint_model
from fastclap.model import load_exported
from fastclap.serialization import UnsafeFileError
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS, EVERY = 4, 2
MODEL_FILE = "mp_rank_00_model_states.pt"


def _cfg(run_dir, steps=STEPS, stage=0, **sections):
    run = dict({"checkpoint_every": EVERY, "keep_checkpoints": 0, "export": False}, **sections.pop("run", {}))
    return tiny_config(run_dir, stage=stage, steps=steps, run=run, **sections)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished run with verified checkpoints step 2 and step 4, and its per-step losses."""
    root = tmp_path_factory.mktemp("base")
    main(["--config", write_config(root / "c.json", _cfg(root / "run"))])
    return root / "run", [r["loss"] for r in read_metrics(root / "run")]


def _copy(base, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(base[0], dst)
    return dst


def _resume(tmp_path, run_dir, *extra, cfg=None):
    path = write_config(tmp_path / "resume.json", cfg or _cfg(run_dir))
    return main(["--config", path, "--resume", *extra])


class _Payload:
    """Unpickling this calls os.mkdir(marker): the shape of a code-execution payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _plant(path, marker):
    torch.save({"module": _Payload(marker), "step": 4}, path)
    write_manifest(os.path.dirname(path), os.path.basename(os.path.dirname(path)))  # the attacker fixes the manifest


def test_checkpoint_files_verify_against_their_manifest(base):
    ckpt = base[0] / "checkpoints"
    assert read_latest(str(base[0])) == tag_for(4)
    for step in (2, 4):
        manifest = verify(str(ckpt / tag_for(step)))
        assert {MODEL_FILE, FINGERPRINT} <= set(manifest["files"])
        for name, entry in manifest["files"].items():
            assert entry["bytes"] == os.path.getsize(ckpt / tag_for(step) / name) > 0


def test_crafted_pickle_in_a_checkpoint_is_refused_before_it_runs(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    marker = tmp_path / "payload_ran"
    _plant(run_dir / "checkpoints" / tag_for(4) / MODEL_FILE, marker)
    with pytest.raises(UnsafeFileError, match=rf"{MODEL_FILE}: refused to load: it asks for (posix|os)\.mkdir"):
        _resume(tmp_path, run_dir)
    with pytest.raises(UnsafeFileError, match="refused to load"):
        load_checkpoint_model(str(run_dir), 4)
    export = tmp_path / "model.pt"
    torch.save({"format": "fastclap-export-v1", "x": _Payload(marker)}, export)
    with pytest.raises(UnsafeFileError, match="refused to load"):
        load_exported(str(export))
    assert not marker.exists()
    print("crafted pickle: refused by the trainer's resume, the experiment loader and the export loader; payload ran 0 of 3")


@pytest.mark.parametrize("case", ["other_run", "missing_target", "garbage", "traversal"])
def test_untrusted_latest_is_ignored(base, tmp_path, capsys, case):
    run_dir = _copy(base, tmp_path)
    other = _copy(base, tmp_path, "other")
    shutil.copytree(other / "checkpoints" / tag_for(4), other / "checkpoints" / tag_for(6))
    latest = run_dir / "checkpoints" / "latest"
    content = {"other_run": f"../../other/checkpoints/{tag_for(6)}".encode(), "missing_target": tag_for(8).encode(),
               "garbage": bytes(range(128, 256)), "traversal": str(other / "checkpoints" / tag_for(6)).encode()}[case]
    latest.write_bytes(content)
    summary = _resume(tmp_path, run_dir)
    assert summary["start_step"] == 4  # this run's own newest verified checkpoint, never the other run's step 6
    assert "ignoring" in capsys.readouterr().out
    assert read_latest(str(run_dir)) == tag_for(4)  # rewritten to the checkpoint resumed from
    with capsys.disabled():
        print(f"latest -> {case}: ignored with a message; resumed from this run's own verified step 4")


@pytest.mark.parametrize("case", ["empty_dir", "missing_model", "zeroed_model", "truncated_model", "no_manifest",
                                  "no_fingerprint"])
def test_broken_newest_checkpoint_falls_back_to_the_previous_one(base, tmp_path, capsys, case):
    run_dir = _copy(base, tmp_path)
    step4 = run_dir / "checkpoints" / tag_for(4)
    model = step4 / MODEL_FILE
    if case == "empty_dir":
        shutil.rmtree(step4)
        step4.mkdir()
    elif case == "missing_model":
        model.unlink()
    elif case == "zeroed_model":
        model.write_bytes(bytes(model.stat().st_size))
    elif case == "truncated_model":
        model.write_bytes(model.read_bytes()[:100])
    elif case == "no_fingerprint":  # deleted, and the manifest rewritten without it
        (step4 / FINGERPRINT).unlink()
        write_manifest(str(step4), tag_for(4))
    else:
        (step4 / MANIFEST).unlink()
    summary = _resume(tmp_path, run_dir)
    out = capsys.readouterr().out
    assert summary["start_step"] == 2
    assert f"skipping checkpoint {tag_for(4)}" in out
    want = {"empty_dir": MANIFEST, "missing_model": MODEL_FILE, "zeroed_model": MODEL_FILE,
            "truncated_model": MODEL_FILE, "no_manifest": MANIFEST, "no_fingerprint": f"{FINGERPRINT}: fingerprint missing"}[case]
    assert want in out  # the message names the file
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(base[1], abs=1e-6, rel=0)
    assert os.path.isdir(run_dir / "checkpoints" / "set_aside" / tag_for(4))  # kept, never resumed again
    verify(str(run_dir / "checkpoints" / tag_for(4)))  # the new step 4 is complete
    with capsys.disabled():
        print(f"newest checkpoint {case}: skipped naming {want}; resumed from step 2 with the uninterrupted losses")


def test_a_checkpoint_copied_under_another_step_name_is_skipped_by_name(base, tmp_path, capsys):
    run_dir = _copy(base, tmp_path)
    ckpt = run_dir / "checkpoints"
    shutil.copytree(ckpt / tag_for(2), ckpt / tag_for(6))  # every file intact, its manifest says step 2
    with pytest.raises(CheckpointError, match=f"but the folder is {tag_for(6)}"):
        _resume(tmp_path, run_dir, "--resume-from", "6")
    summary = _resume(tmp_path, run_dir)
    out = capsys.readouterr().out
    assert f"skipping checkpoint {tag_for(6)}" in out and f"written for checkpoint '{tag_for(2)}', but the folder " \
        f"is {tag_for(6)}" in out
    assert summary["start_step"] == 4


def test_no_checkpoint_verifies_names_every_reason(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    for step in (2, 4):
        (run_dir / "checkpoints" / tag_for(step) / MODEL_FILE).write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match=rf"(?s)no checkpoint .* verifies.*{tag_for(4)}.*{tag_for(2)}"):
        _resume(tmp_path, run_dir)


def test_only_rank0_hashes_checkpoints_and_every_rank_gets_its_choice(tmp_path):
    from dist_worker import choose_checkpoint_worker, run_ranks

    ckpt = tmp_path / "run" / "checkpoints"
    for step in (2, 4):
        d = ckpt / tag_for(step)
        d.mkdir(parents=True)
        (d / MODEL_FILE).write_bytes(os.urandom(1000))
        (d / FINGERPRINT).write_text("{}")
        write_manifest(str(d), tag_for(step))
    with open(ckpt / tag_for(4) / MODEL_FILE, "r+b") as f:  # same size, other bytes: only its hash tells
        f.write(b"\0" * 8)
    ranks = run_ranks(choose_checkpoint_worker, 2, tmp_path, str(tmp_path / "run"))
    assert [r["tag"] for r in ranks] == [tag_for(2)] * 2
    assert ranks[0]["error"] == ranks[1]["error"] and ranks[0]["error"][0] == "CheckpointError"
    assert "SHA-256 differs" in ranks[1]["error"][1]
    # two files each (model, fingerprint): step 4, step 2; step 4 again for --resume-from
    assert ranks[0]["hashed"] == 6 and ranks[1]["hashed"] == 0


def test_resume_from_picks_a_checkpoint_by_hand(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    summary = _resume(tmp_path, run_dir, "--resume-from", tag_for(2))
    assert summary["start_step"] == 2
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(base[1], abs=1e-6, rel=0)
    assert sorted(os.listdir(run_dir / "checkpoints" / "set_aside")) == [tag_for(4)]
    with pytest.raises(FileNotFoundError, match=rf"--resume-from {tag_for(3)}: no such checkpoint"):
        _resume(tmp_path, run_dir, "--resume-from", "3")
    (run_dir / "checkpoints" / tag_for(2) / MODEL_FILE).write_bytes(b"x")
    with pytest.raises(CheckpointError, match=MODEL_FILE):
        _resume(tmp_path, run_dir, "--resume-from", tag_for(2))


def _with(cfg, **changes):
    for key, value in changes.items():
        node = cfg
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def test_resume_with_changed_settings_stops_naming_each_key(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    shutil.rmtree(run_dir / "checkpoints" / tag_for(4))  # resume from step 2, so there is work left
    cfg = _with(_cfg(run_dir), fastclap__loss__soft_weight=0.25, fastclap__run__seed=7,
                train_micro_batch_size_per_gpu=8)
    with pytest.raises(ConfigChangedError) as err:
        _resume(tmp_path, run_dir, cfg=cfg)
    msg = str(err.value)
    for line in ("fastclap.loss.soft_weight: 0.5 -> 0.25", "fastclap.run.seed: 0 -> 7",
                 "train_micro_batch_size_per_gpu: 16 -> 8", "--allow-config-change"):
        assert line in msg
    # only logging / checkpointing keys changed: no objection
    ok = _with(_cfg(run_dir), fastclap__run__log_every=2, fastclap__run__progress=False, fastclap__eval__every=0)
    assert _resume(tmp_path, run_dir, cfg=ok)["start_step"] == 2


def test_allow_config_change_records_the_change_and_the_step(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    shutil.rmtree(run_dir / "checkpoints" / tag_for(4))
    cfg = _with(_cfg(run_dir), fastclap__loss__soft_weight=0.25)
    summary = _resume(tmp_path, run_dir, "--allow-config-change", cfg=cfg)
    assert summary["start_step"] == 2
    with open(run_dir / "config.json") as f:
        recorded = json.load(f)
    assert recorded["fastclap"]["loss"]["soft_weight"] == 0.25
    assert recorded["config_changes"] == [
        {"step": 2, "changes": {"fastclap.loss.soft_weight": {"old": 0.5, "new": 0.25}}}]
    losses = [r["loss"] for r in read_metrics(run_dir)]
    assert losses[:2] == pytest.approx(base[1][:2], abs=1e-6, rel=0)
    assert losses[2] != pytest.approx(base[1][2], abs=1e-6, rel=0)  # the new soft_weight took effect
    # the new values are now the run's: resuming with them again needs no flag
    assert json.load(open(run_dir / "checkpoints" / tag_for(4) / FINGERPRINT))["fastclap.loss.soft_weight"] == 0.25


def test_changing_the_zero_stage_is_refused_even_when_allowed(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    cfg = _cfg(run_dir, stage=2)
    for extra in ((), ("--allow-config-change",)):
        with pytest.raises(ConfigChangedError, match=r"zero_optimization.stage: 0 -> 2"):
            _resume(tmp_path, run_dir, *extra, cfg=cfg)


@pytest.mark.parametrize("stage,bf16", [(1, False), (2, True), (3, False), (3, True)])
def test_every_zero_stage_resumes_through_the_safe_loader(tmp_path, stage, bf16):
    """The allow-list covers what DeepSpeed writes for each ZeRO stage and bf16 (the loader refuses all else)."""
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=stage, bf16=bf16, steps=3,
                      run={"checkpoint_every": 1, "keep_checkpoints": 0, "export": False})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    first = [r["loss"] for r in read_metrics(run_dir)]
    summary = main(["--config", write_config(tmp_path / "c.json", cfg), "--resume-from", tag_for(1)])
    assert summary["start_step"] == 1
    assert [r["loss"] for r in read_metrics(run_dir)] == pytest.approx(first, abs=1e-6, rel=0)


@pytest.mark.parametrize("content", [b"\0" * 4096, b"not a checkpoint"])
def test_evaluator_reports_a_corrupt_export_as_an_error(tmp_path, capsys, content):
    from fastclap.evaluate import main as evaluate_main

    export = tmp_path / "run" / "export" / "model.pt"
    export.parent.mkdir(parents=True)
    export.write_bytes(content)
    rc = evaluate_main(["--checkpoint", str(tmp_path / "run"), "--prepared", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {export}: ") and "Traceback" not in err


def test_fresh_start_after_a_run_killed_inside_its_first_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    partial = run_dir / "checkpoints" / tag_for(2)
    partial.mkdir(parents=True)
    (partial / MODEL_FILE).write_bytes(b"torn")  # no manifest: the write never finished, nothing to resume
    main(["--config", write_config(tmp_path / "c.json", _cfg(run_dir, steps=2))])
    verify(str(partial))


def test_no_unsafe_torch_load_in_the_project():
    """Every torch.load of the package and its tests and benchmarks passes weights_only=True."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    unsafe = []
    for path in list(root.glob("fastclap/**/*.py")) + list(root.glob("tests/*.py")) + list(root.glob("benchmarks/**/*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line and "``torch.load" not in line \
                    and "torch\\.load" not in line:
                unsafe.append(f"{path.relative_to(root)}:{n}")
    assert unsafe == []
