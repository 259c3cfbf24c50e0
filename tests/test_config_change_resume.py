"""``--allow-config-change`` changes take effect (fp32, ZeRO 0 and 2): the LR schedule and the optimizer's
param-group lr come from the new config at the resumed step, what config.json records is what trains; a change
that cannot be applied to the checkpoint is refused by name.

The expected lrs come from the schedule's definition (linear warm-up, then cosine to min_lr_ratio; Loshchilov &
Hutter 2017) written out here, not from fastclap.engine.schedule.
"""
import json
import math
import shutil

import pytest

from fastclap.engine.checkpoint import tag_for
from fastclap.engine.fingerprint import ConfigChangedError
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS, EVERY, LR, WARMUP = 4, 2, 3e-3, 1


def _cfg(run_dir, stage=0, steps=STEPS, lr=LR, **sections):
    cfg = tiny_config(run_dir, stage=stage, steps=steps,
                      run={"checkpoint_every": EVERY, "keep_checkpoints": 0, "export": False}, **sections)
    cfg["optimizer"]["params"]["lr"] = lr
    return cfg


def expected_lr(peak, step0, steps, warmup=WARMUP, min_ratio=0.0):
    """lr of 0-based optimizer step ``step0``: warm-up (step0+1)/warmup, then a half cosine to min_ratio."""
    if step0 < warmup:
        return peak * (step0 + 1) / warmup
    p = min(1.0, (step0 - warmup) / max(1, steps - warmup))
    return peak * (min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * p)) / 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished 4-step runs (checkpoints 2 and 4) per ZeRO stage, each trained once on first use."""
    done = {}

    def get(stage):
        if stage not in done:
            root = tmp_path_factory.mktemp(f"base{stage}")
            main(["--config", write_config(root / "c.json", _cfg(root / "run", stage))])
            done[stage] = root / "run", stage
        return done[stage]
    return get


@pytest.fixture(params=[0, 2])
def base(request, runs):
    return runs(request.param)


@pytest.fixture(params=[0, 2, 3])
def base_any_stage(request, runs):
    """ZeRO 3 too (partitioned parameters and optimizer state): its param groups take the new lr as well."""
    return runs(request.param)


def _copy(base, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(base[0], dst)
    return dst


def _recorded(run_dir):
    with open(run_dir / "config.json") as f:
        return json.load(f)


def test_more_steps_rebuild_the_schedule_at_the_resumed_step(base, tmp_path):
    run_dir, stage = _copy(base, tmp_path), base[1]
    steps = STEPS + 3
    cfg = write_config(tmp_path / "c.json", _cfg(run_dir, stage, steps=steps))
    summary = main(["--config", cfg, "--resume", "--allow-config-change"])
    assert summary["start_step"] == STEPS
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == list(range(1, steps + 1))
    got = [r["lr"] for r in recs[STEPS:]]
    want = [expected_lr(LR, s, steps) for s in range(STEPS, steps)]
    assert min(want) > 0
    assert got == pytest.approx(want, rel=1e-12, abs=0)  # the old schedule had ended: lr 0 on every new step
    assert _recorded(run_dir)["fastclap"]["schedule"]["steps"] == steps
    print(f"ZeRO {stage}: steps {STEPS} -> {steps} at resume: lrs {got} follow the new schedule")


def test_a_new_peak_lr_is_set_in_the_param_groups(base_any_stage, tmp_path):
    run_dir, stage = _copy(base_any_stage, tmp_path), base_any_stage[1]
    cfg = write_config(tmp_path / "c.json", _cfg(run_dir, stage, lr=0.1))
    summary = main(["--config", cfg, "--resume-from", str(EVERY), "--allow-config-change"])
    assert summary["start_step"] == EVERY
    recs = read_metrics(run_dir)
    got = [r["lr"] for r in recs]
    want = [expected_lr(LR, s, STEPS) for s in range(EVERY)] + [expected_lr(0.1, s, STEPS) for s in range(EVERY, STEPS)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    recorded = _recorded(run_dir)
    assert recorded["optimizer"]["params"]["lr"] == 0.1
    assert recorded["config_changes"][-1] == {"step": EVERY, "changes": {"optimizer.params.lr": {"old": LR, "new": 0.1}}}


@pytest.mark.parametrize("key,section,value", [
    ("fastclap.model.embed_dim", "model", {"embed_dim": 24}),
    ("fastclap.model.logit_scale_init", "model", {"logit_scale_init": 5.0}),
])
def test_a_change_that_cannot_be_applied_is_refused_by_name(runs, tmp_path, key, section, value):
    run_dir = _copy(runs(0), tmp_path)
    cfg = _cfg(run_dir, steps=STEPS + 2)
    cfg["fastclap"][section].update(value)
    before = (run_dir / "config.json").read_bytes()
    with pytest.raises(ConfigChangedError, match=rf"cannot apply .*\n  {key}: "):
        main(["--config", write_config(tmp_path / "c.json", cfg), "--resume", "--allow-config-change"])
    assert (run_dir / "config.json").read_bytes() == before


def test_another_world_size_with_the_same_micro_batch_is_a_changed_setting():
    """A 1-rank run resumed on 2 ranks with only train_micro_batch_size_per_gpu set trains a global batch twice
    as large: the fingerprint must see it (world_size), with or without DeepSpeed's derived train_batch_size."""
    from fastclap.engine.fingerprint import check_unchanged, fingerprint

    cfg = _cfg("unused")
    one, two = fingerprint(cfg, 1, 16), fingerprint(cfg, 2, 16)
    with pytest.raises(ConfigChangedError, match=r"\n  world_size: 1 -> 2(\n|$)"):
        check_unchanged(one, two, "step_00000002", allow=False)
    assert check_unchanged(one, fingerprint(cfg, 1, 16), "step_00000002", allow=False) == []
