"""DeepSpeed ZeRO stages 0-3 train with the fused loss; on one rank in fp32 they follow the same curve."""
import math

import pytest
import torch

from fastclap.model import load_exported
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS = 3


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    out = {}
    for stage in (0, 1, 2, 3):
        d = tmp_path_factory.mktemp(f"zero{stage}")
        cfg = tiny_config(d / "run", stage=stage, steps=STEPS)
        summary = main(["--config", write_config(d / "c.json", cfg)])
        out[stage] = (summary, read_metrics(d / "run"), d / "run")
    return out


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage_trains(curves, stage):
    summary, recs, run_dir = curves[stage]
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    for r in recs:
        assert math.isfinite(r["loss"]) and r["pairs_per_s"] > 0 and 0 <= r["loss_share"] <= 1
    # the weights moved: the exported model differs from a fresh one and its embeddings are unit vectors
    model = load_exported(str(run_dir))
    emb = model.encode_text(["speaker is happy", "speaker is sad"])
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_zero_stages_agree(curves):
    """ZeRO only changes where optimizer state lives: fp32 curves on one rank agree to rounding."""
    ref = [r["loss"] for r in curves[0][1]]
    assert ref[-1] != ref[0]
    for stage in (1, 2, 3):
        got = [r["loss"] for r in curves[stage][1]]
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-5), stage
    e0 = load_exported(str(curves[0][2])).state_dict()
    e3 = load_exported(str(curves[3][2])).state_dict()
    for k in e0:
        torch.testing.assert_close(e3[k], e0[k], rtol=1e-4, atol=1e-5, msg=k)


def test_bf16_zero2_follows_the_fp32_curve(tmp_path, curves):
    """bf16 ZeRO-2 against the fp32 ZeRO-2 curve from the same initial weights. Step 1 is one bf16 forward
    (8 mantissa bits: relative error of order 2^-8); later steps also carry the bf16 gradients' effect on the
    fp32 master weights, allowed 4x that. The fp32 curve moves by far more than this between steps, so a bf16 run
    that does not train, or trains other weights, fails."""
    cfg = tiny_config(tmp_path / "run", stage=2, steps=STEPS, bf16=True)
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    got = [r["loss"] for r in read_metrics(tmp_path / "run")]
    ref = [r["loss"] for r in curves[2][1]]
    assert len(got) == STEPS and max(abs(b - a) for a, b in zip(ref, ref[1:])) > 0.1 * abs(ref[0])
    assert got[0] == pytest.approx(ref[0], rel=2 ** -8, abs=0)
    assert got[1:] == pytest.approx(ref[1:], rel=2 ** -6, abs=0)
    model = load_exported(str(tmp_path / "run"))
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("stage,bf16", [(0, False), (1, False), (2, True), (3, False), (3, True)])
def test_clamp_logit_scale_reaches_master_and_module(tmp_path, stage, bf16):
    """After the clamp, the fp32 master copy (which the optimizer steps) and the module's value are both at
    most log(logit_scale_max); a value below the limit is left alone."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    from fastclap.config import load_config
    from fastclap.engine.distributed import init_distributed
    from fastclap.engine.setup import build_engine, clamp_logit_scale
    from fastclap.model import CLAPModel

    ds_cfg, cfg = load_config(write_config(tmp_path / "c.json", tiny_config(tmp_path / "run", stage=stage, bf16=bf16)))
    init_distributed()
    engine, _ = build_engine(CLAPModel(cfg.model), ds_cfg, cfg)
    p = engine.module.logit_scale
    limit = math.log(cfg.model.logit_scale_max)

    def values():
        master = safe_get_full_fp32_param(p)
        if hasattr(p, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([p]):
                module = float(p.data)
        else:
            module = float(p.data)
        return (None if master is None else float(master)), module

    def put(v):
        if safe_get_full_fp32_param(p) is not None:
            safe_set_full_fp32_param(p, torch.tensor(v))
        if hasattr(p, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                p.data.fill_(v)
        else:
            p.data.fill_(v)

    put(limit + 0.5)
    assert all(v is None or v > limit for v in values())  # the setter reached both copies
    clamp_logit_scale(engine, cfg.model.logit_scale_max)
    master, module = values()
    assert stage == 0 or master is not None
    assert (master is None or master <= limit + 1e-6) and module <= limit + 1e-2  # bf16 module: its rounding
    put(limit - 0.25)
    before = values()
    clamp_logit_scale(engine, cfg.model.logit_scale_max)
    assert values() == before
