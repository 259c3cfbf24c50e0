"""Two ranks with micro batch B/2 follow the one-rank curve with micro batch B (fp32, ZeRO 0, 2 and 3, and
ZeRO 2 with gradient caching).

Both runs see the same global batch every step (the ranks' shards concatenate to the single-process batch,
tests/test_engine_data.py), the loss all-gathers features and sources with their gradient (local_loss), and
DeepSpeed averages gradients over ranks, so every parameter gradient equals the single-process one (spec
Sec. 3) up to the order of fp32 reductions: row blocks of the loss and the gradient all-reduce sum in another
order (relative error ~1e-7 per step). Over 4 AdamW steps this stays far below the 1e-5 relative tolerance on
the losses, while one wrong pair, a missing 1/world factor or an unsynchronised gradient moves the curve by
1e-3 or more (test_train_zero: the curve changes at the first digit within 3 steps). Dropout is off: the ranks'
dropout streams cannot reproduce one process's mask.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch

from fastclap.model import load_exported
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, BATCH, WORLD = 4, 16, 2
STAGES = (0, 2, 3)


def _config(run_dir, stage, micro):
    cfg = tiny_config(run_dir, stage=stage, steps=STEPS, micro=micro,
                      model={"audio": {"hidden": 32, "dropout": 0.0}, "projection_dropout": 0.0},
                      run={"export": True, "checkpoint_every": 0})
    cfg["fastclap"]["model"]["text"]["hf_config"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg["gradient_clipping"] = 1.0  # the global gradient norm spans both ranks' shards
    return cfg


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(paths, env):
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "dist_train_worker.py"), *paths],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return procs, logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multirank")
    single = root / "one_rank"
    main(["--config", write_config(root / "one.json", _config(single, 0, BATCH))])
    paths = [write_config(root / f"two_z{st}.json", _config(root / f"two_z{st}", st, BATCH // WORLD)) for st in STAGES]
    cached = _config(root / "two_gc", 2, BATCH // WORLD)
    cached["fastclap"]["grad_cache"] = {"sub_batch": 3}  # 8 pairs per rank: sub-batches of 3, 3 and 2
    paths.append(write_config(root / "two_gc.json", cached))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(WORLD_SIZE=str(WORLD), LOCAL_SIZE=str(WORLD), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([HERE] + env.get("PYTHONPATH", "").split(os.pathsep)))
    for attempt in range(2):  # a second try only when another process took the free port before rank 0 bound it
        procs, logs = _launch(paths, dict(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())))
        if attempt == 0 and any("address already in use" in log.lower() for log in logs):
            continue
        break
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} failed:\n{log[-4000:]}"
    return single, dict({st: root / f"two_z{st}" for st in STAGES}, gc=root / "two_gc")


@pytest.mark.parametrize("stage", STAGES + ("gc",))
def test_two_ranks_follow_the_one_rank_curve(runs, stage):
    # stage "gc": ZeRO 2 with gradient caching (fastclap.grad_cache.sub_batch 3) through the same trainer
    single, two = runs
    ref = [r["loss"] for r in read_metrics(single)]
    got = read_metrics(two[stage])
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert max(ref) - min(ref) > 1e-2  # not a flat curve: batches and weights change from step to step
    assert [r["loss"] for r in got] == pytest.approx(ref, rel=1e-5, abs=0)
    a, b = load_exported(str(single)).state_dict(), load_exported(str(two[stage])).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
