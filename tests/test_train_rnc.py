"""Training with the Rank-N-Contrast term: name "rnc" alone and L_SmoothCLAP + lambda L_RnC, ZeRO 0-3 on one rank
(fp32 curves agree to rounding) and on two ranks (the one-rank curve, as tests/test_train_multirank.py)."""
import math
import os

import pytest

from fastclap.config import split_config
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config
from test_train_multirank import HERE, WORLD, _config, _free_port, _launch

STEPS = 3
COMBINED = {"name": "smoothclap", "rnc_weight": 0.5}


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    out = {}
    for key, loss, stage in [("combined", COMBINED, s) for s in (0, 1, 2, 3)] + [("rnc", {"name": "rnc"}, 2),
                                                                                  ("smooth", {}, 2)]:
        d = tmp_path_factory.mktemp(f"{key}{stage}")
        cfg = tiny_config(d / "run", stage=stage, steps=STEPS, loss=loss)
        main(["--config", write_config(d / "c.json", cfg)])
        out[(key, stage)] = [r["loss"] for r in read_metrics(d / "run")]
    return out


def test_zero_stages_agree_with_rnc(one_rank):
    ref = one_rank[("combined", 0)]
    assert len(ref) == STEPS and all(math.isfinite(v) for v in ref) and ref[-1] != ref[0]
    for stage in (1, 2, 3):
        assert one_rank[("combined", stage)] == pytest.approx(ref, rel=1e-5, abs=1e-5), stage


def test_rnc_term_changes_the_objective(one_rank):
    smooth, combined, rnc = one_rank[("smooth", 2)], one_rank[("combined", 2)], one_rank[("rnc", 2)]
    assert combined[0] > smooth[0] + 0.1  # + 0.5 * L_RnC (L_RnC ~ log B > 1 at the start)
    assert all(math.isfinite(v) for v in rnc) and rnc[0] != smooth[0]


@pytest.mark.parametrize("loss,key,match", [
    ({"rnc_weight": -1.0}, "fastclap.loss.rnc_weight", "must be a finite number >= 0"),
    ({"rnc_dims": 4}, "fastclap.loss.rnc_dims", "must be 2"),
    ({"rnc_distance": "cos"}, "fastclap.loss.rnc_distance", "must be one of"),
    ({"name": "rank"}, "fastclap.loss.name", "must be one of"),
])
def test_bad_rnc_config_names_the_key(tmp_path, loss, key, match):
    cfg = tiny_config(tmp_path / "run", loss=loss)
    with pytest.raises(ValueError, match=f"{key}: {match}"):
        split_config(cfg)


def test_two_ranks_follow_the_one_rank_curve_with_rnc(tmp_path):
    batch = 16
    def cfg(run_dir, stage, micro):
        c = _config(run_dir, stage, micro)
        c["fastclap"]["loss"].update(COMBINED)
        return c
    main(["--config", write_config(tmp_path / "one.json", cfg(tmp_path / "one", 0, batch))])
    paths = [write_config(tmp_path / f"two{st}.json", cfg(tmp_path / f"two{st}", st, batch // WORLD)) for st in (0, 3)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(WORLD_SIZE=str(WORLD), LOCAL_SIZE=str(WORLD), HF_HUB_OFFLINE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()),
               PYTHONPATH=os.pathsep.join([HERE] + env.get("PYTHONPATH", "").split(os.pathsep)))
    procs, logs = _launch(paths, env)
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} failed:\n{log[-4000:]}"
    ref = [r["loss"] for r in read_metrics(tmp_path / "one")]
    assert max(ref) - min(ref) > 1e-2
    for st in (0, 3):
        assert [r["loss"] for r in read_metrics(tmp_path / f"two{st}")] == pytest.approx(ref, rel=1e-5, abs=0), st
