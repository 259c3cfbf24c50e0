"""One training step with gradient caching and the plain full-batch step it must reproduce (tests only).

Both build the same tiny CLAP model (dropout on in the LLD tower, the projection heads and the trainable BERT
text tower) inside a DeepSpeed engine, seed the dropout stream identically and take one SGD step (the update
is lr x gradient, so equal updated weights mean equal gradients, with no Adam normalisation amplifying
rounding). The reference keeps every graph: it runs the model on the same consecutive row slices of the batch
(dropout masks are drawn per forward call, so this is the full-batch step whose random draws gradient caching
replays), concatenates the embeddings, and calls ``engine.backward`` once on the global loss.
"""
import torch

from fastclap.config import split_config
from fastclap.data.dataset import collate_clap
from fastclap.engine.distributed import init_distributed
from fastclap.engine.grad_cache import GradCache
from fastclap.engine.setup import build_engine
from fastclap.data.synthetic import SyntheticClapDataset
from fastclap.model import CLAPModel
from fastclap.model.export import full_fp32_state_dict
from fastclap.trainer import build_loss, loss_inputs
from test_train_helpers import tiny_config

LR = 0.5


def step_config(stage, micro, sub_batch, dropout=0.2, bf16=False):
    cfg = tiny_config("unused", stage=stage, micro=micro, bf16=bf16,
                      model={"audio": {"hidden": 16, "dropout": dropout}, "projection_dropout": dropout})
    cfg["fastclap"]["model"]["text"]["hf_config"].update(hidden_dropout_prob=dropout,
                                                         attention_probs_dropout_prob=dropout)
    cfg["fastclap"]["grad_cache"] = {"sub_batch": sub_batch}
    cfg["optimizer"] = {"type": "SGD", "params": {"lr": LR}}
    cfg["zero_allow_untested_optimizer"] = True  # plain SGD: the update is lr x the reduced gradient
    return cfg


def local_batch(n_global, rank, world, seed=0):
    """This rank's consecutive share of a global batch of synthetic pairs (LLD input, random crops)."""
    ds = SyntheticClapDataset(64, "train", "train", 0.5, seed=seed)
    per = n_global // world
    return collate_clap([ds[i] for i in range(rank * per, (rank + 1) * per)])


def _rows(batch, a, b):
    n = len(batch["captions"])
    return {k: (v[a:b] if (torch.is_tensor(v) and v.dim() and v.shape[0] == n) or isinstance(v, list) else v)
            for k, v in batch.items()}


def one_step(stage, batch, sub_batch, cached, rank=0, world=1, dropout=0.2, bf16=False, seed=0):
    """Build an engine, take one step on ``batch`` and return (loss, {name: full gradient}, {name: updated
    fp32 weight}). ``cached``: GradCache with ``sub_batch``; else the reference (``sub_batch`` 0: one forward of
    the whole batch)."""
    ds_cfg, cfg = split_config(step_config(stage, len(batch["captions"]), sub_batch, dropout, bf16))
    init_distributed()
    torch.manual_seed(seed)
    engine, _ = build_engine(CLAPModel(cfg.model), ds_cfg, cfg)
    engine.train()
    loss_fn = build_loss(cfg, rank, world)
    torch.manual_seed(seed + 1)
    if cached:
        cache = GradCache(engine, sub_batch, torch.device("cpu"))
        out = cache.forward(batch)
    else:
        n = len(batch["captions"])
        size = sub_batch or n
        outs = [engine(_rows(batch, a, min(n, a + size))) for a in range(0, n, size)]
        out = {k: torch.cat([o[k] for o in outs]) for k in ("audio_features", "text_features", "text_embeddings")}
        out["logit_scale"] = outs[0]["logit_scale"]
    x, y, sources = loss_inputs(out, batch, cfg)
    loss = loss_fn(x, y, out["logit_scale"], soft_target_features=sources)
    if cached:
        cache.backward(loss)
    else:
        engine.backward(loss)
    from deepspeed.utils import safe_get_full_grad

    grads = {}
    for name, p in engine.module.named_parameters():
        if p.requires_grad:
            g = safe_get_full_grad(p)
            grads[name] = None if g is None else g.detach().float().clone()
    engine.step()
    weights = full_fp32_state_dict(engine.module)
    return float(loss.detach()), grads, weights, torch.get_rng_state()


def max_rel_diff(got, ref):
    """max |got - ref| over the entries of each tensor, relative to max(1, max |ref|): the worst over names."""
    worst = 0.0
    for k, r in ref.items():
        g = got[k]
        assert (g is None) == (r is None), k
        if r is not None:
            worst = max(worst, (g - r).abs().max().item() / max(1.0, r.abs().max().item()))
    return worst
