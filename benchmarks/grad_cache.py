"""Peak memory and pairs/s of one training step against ``fastclap.grad_cache.sub_batch`` (CPU, fp32).

    python -m benchmarks.grad_cache --out benchmarks/results/grad_cache_cpu_<date>.jsonl   # sweep + plot
    python -m benchmarks.grad_cache --point '{"sub_batch": 8, ...}'                        # one point

The model is a real fastclap CLAPModel in a DeepSpeed engine (ZeRO 0, one rank) with a Hugging Face
wav2vec2-style audio tower and a BERT-style text tower, both built from small configs with random weights
(nothing is downloaded), trained with SmoothCLAP on a fixed contrastive batch of synthetic 16 kHz clips and
templated captions. Each sub_batch value runs in a fresh process: a warm-up step, one step whose peak memory
is measured (above the process after the warm-up: the model, optimizer state and batch exist; the peak holds
gradients and activations), then timed steps (median time -> pairs/s). Peak memory is VmHWM - VmRSS, the
method of benchmarks/measure.py, with glibc's mmap threshold at 64 KiB from the start of the process (freed
buffers go back to the kernel, so the baseline holds no memory retained from the warm-up step) and at 32 MiB
for the timed steps. sub_batch 0 is the plain step.

The row also carries the tower sizes in "activation units" per pair (:func:`activation_units`), which
:func:`estimate` uses to extrapolate the measured activation bytes per in-flight pair to wav2vec2-large +
BERT-base; that extrapolation is an estimate, written to the results as such.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

MiB = 2 ** 20
DEFAULT = {"batch": 32, "seconds": 1.0, "audio_hidden": 128, "audio_layers": 4, "audio_heads": 4,
           "audio_intermediate": 256, "conv_dim": 128, "text_hidden": 64, "text_layers": 2, "text_heads": 2,
           "text_intermediate": 128, "caption_tokens": 32, "embed_dim": 128, "repeats": 2, "threads": 1}
CONV_KERNEL, CONV_STRIDE = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)  # wav2vec2's feature encoder


def conv_frames(samples: int) -> List[int]:
    """Frames after each of wav2vec2's 7 convolutions for ``samples`` input samples."""
    out, t = [], samples
    for k, s in zip(CONV_KERNEL, CONV_STRIDE):
        t = (t - k) // s + 1
        out.append(t)
    return out


def activation_units(conv_dim: int, hidden: int, layers: int, heads: int, intermediate: int, samples: int,
                     text_hidden: int, text_layers: int, text_heads: int, text_intermediate: int,
                     tokens: int) -> float:
    """A first-order count of the activation elements one pair keeps for backward: the feature encoder's
    conv outputs (sum over layers of channels x frames, x3 for the norm and GELU copies) plus, per transformer
    layer and token, 8 hidden-size tensors (q, k, v, attention output, projections, two norms), 2 FFN
    intermediates and 2 heads x tokens attention maps (softmax and its dropout), for both towers."""
    frames = conv_frames(samples)
    conv = 3 * conv_dim * sum(frames)

    def encoder(h, n_layers, n_heads, inter, t):
        return n_layers * t * (8 * h + 2 * inter + 2 * n_heads * t)

    return float(conv + encoder(hidden, layers, heads, intermediate, frames[-1])
                 + encoder(text_hidden, text_layers, text_heads, text_intermediate, tokens))


def _point_units(p: Dict[str, Any]) -> float:
    return activation_units(p["conv_dim"], p["audio_hidden"], p["audio_layers"], p["audio_heads"],
                            p["audio_intermediate"], int(p["seconds"] * 16000), p["text_hidden"], p["text_layers"],
                            p["text_heads"], p["text_intermediate"], p["caption_tokens"])


def _config(p: Dict[str, Any]) -> Dict[str, Any]:
    audio = {"model_type": "wav2vec2", "hidden_size": p["audio_hidden"], "num_hidden_layers": p["audio_layers"],
             "num_attention_heads": p["audio_heads"], "intermediate_size": p["audio_intermediate"],
             "conv_dim": [p["conv_dim"]] * 7, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
             "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "mask_time_prob": 0.0}
    text = {"model_type": "bert", "hidden_size": p["text_hidden"], "num_hidden_layers": p["text_layers"],
            "num_attention_heads": p["text_heads"], "intermediate_size": p["text_intermediate"]}
    return {
        "train_micro_batch_size_per_gpu": p["batch"], "gradient_accumulation_steps": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "torch_adam": True}},
        "zero_optimization": {"stage": 0},
        "fastclap": {
            "data": {"input": "waveform"},
            "model": {"audio": {"kind": "hf", "hf_config": audio, "trainable": True},
                      "text": {"hf_config": text, "tokenizer": "builtin:all-MiniLM-L6-v2", "trainable": True,
                               "max_length": p["caption_tokens"]},
                      "embed_dim": p["embed_dim"]},
            "loss": {"name": "smoothclap", "soft_weight": 0.5, "gamma": 0.1, "backend": "chunked"},
            "grad_cache": {"sub_batch": p["sub_batch"]},
        },
    }


def _batch(p: Dict[str, Any]):
    import torch

    g = torch.Generator().manual_seed(0)
    n, t = p["batch"], int(p["seconds"] * 16000)
    words = ["calm", "loud", "happy", "sad", "angry", "slow", "fast", "high", "low", "bright"]
    captions = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(p["caption_tokens"] - 2)) + f" {i}"
                for i in range(n)]  # distinct captions that fill caption_tokens
    return {"waveforms": 0.1 * torch.randn(n, t, generator=g), "attention_mask": torch.ones(n, t, dtype=torch.long),
            "captions": captions, "paraling": torch.randn(n, 88, generator=g)}


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_point(p: Dict[str, Any]) -> Dict[str, Any]:
    """One row: peak step memory (bytes) and pairs/s for the point's sub_batch (run in a fresh process)."""
    import torch

    from benchmarks.measure import _Meter, _mallopt, environment
    from fastclap.config import split_config
    from fastclap.engine.distributed import init_distributed
    from fastclap.engine.grad_cache import make_grad_cache
    from fastclap.engine.setup import build_engine
    from fastclap.model import CLAPModel
    from fastclap.train import build_loss, loss_inputs

    torch.set_num_threads(p["threads"])
    _mallopt(64 * 1024)  # from the start: every buffer of 64 KiB or more is its own mapping, unmapped when freed
    _, _, device = init_distributed()
    ds_cfg, cfg = split_config(_config(p))
    torch.manual_seed(0)
    engine, _ = build_engine(CLAPModel(cfg.model), ds_cfg, cfg)
    engine.train()
    cache = make_grad_cache(engine, p["sub_batch"], device)
    loss_fn = build_loss(cfg)
    batch = _batch(p)

    def step() -> None:
        out = engine(batch) if cache is None else cache.forward(batch)
        x, y, sources = loss_inputs(out, batch, cfg)
        loss = loss_fn(x, y, out["logit_scale"], soft_target_features=sources)
        engine.backward(loss) if cache is None else cache.backward(loss)
        engine.step()

    step()  # warm-up: optimizer state, lazy initialisation
    _malloc_trim()
    meter = _Meter("cpu")
    meter.reset()
    step()
    peak = meter.peak()
    _mallopt(32 * MiB)
    times = []
    for _ in range(p["repeats"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    params = sum(q.numel() for q in engine.module.parameters())
    return dict(p, status="ok", peak_bytes=peak, peak_method=meter.method, step_s=statistics.median(times),
                times_s=times, pairs_per_s=p["batch"] / statistics.median(times), params=params,
                units_per_pair=_point_units(p), **environment("cpu"))


def estimate(rows: List[Dict[str, Any]], pairs: int = 65536, gpus: int = 8) -> Dict[str, Any]:
    """Estimate (arithmetic, not a measurement) of the per-GPU memory of wav2vec2-large + BERT-base training
    at ``pairs`` pairs per step on ``gpus`` GPUs (bf16, ZeRO 2, AdamW, 4 s crops, 64-token captions), from the
    measured rows: activation bytes per in-flight pair = slope of peak memory against sub_batch (least squares
    over the cached rows), scaled by the ratio of activation units (large / measured), halved for bf16."""
    cached = sorted((r for r in rows if r["status"] == "ok" and r["sub_batch"] > 0), key=lambda r: r["sub_batch"])
    xs = [r["sub_batch"] for r in cached]
    ys = [r["peak_bytes"] for r in cached]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    large_units = activation_units(512, 1024, 24, 16, 4096, 64000, 768, 12, 12, 3072, 64)
    per_pair_fp32 = slope * large_units / cached[0]["units_per_pair"]
    per_pair = per_pair_fp32 / 2  # bf16 activations
    params = 317_000_000 + 110_000_000  # wav2vec2-large (~317M) + BERT-base (~110M)
    per_gpu_pairs = pairs // gpus
    states = params * 2 + params * 2 + params * 12 / gpus  # bf16 weights, unreduced bf16 grads, fp32 master+Adam/N
    plain = dict(pairs=per_gpu_pairs, activations_GiB=per_gpu_pairs * per_pair / 2 ** 30)
    embed = per_gpu_pairs * (1024 * 2 + 768) * 4 * 2  # cached features + their gradients (fp32 upper bound)
    budget = 80 * 2 ** 30
    fits = [s for s in (16, 32, 64, 128, 256, 512, 1024) if states + embed + s * per_pair < 0.8 * budget]
    return {
        "label": "ESTIMATE from the measured CPU rows, not a measurement",
        "pairs_per_step": pairs, "gpus": gpus, "pairs_per_gpu": per_gpu_pairs,
        "measured_activation_bytes_per_pair": slope, "measured_units_per_pair": cached[0]["units_per_pair"],
        "large_units_per_pair": large_units, "large_activation_MiB_per_pair_bf16": per_pair / MiB,
        "model_states_GiB_per_gpu": states / 2 ** 30, "embedding_cache_GiB_per_gpu": embed / 2 ** 30,
        "without_grad_cache": plain,
        "with_grad_cache": {str(s): (states + embed + s * per_pair) / 2 ** 30 for s in (16, 32, 64, 128, 256)},
        "largest_sub_batch_within_80pct_of_80GiB": max(fits) if fits else None,
        "extra_compute": "one extra forward of both towers per step (about +1/3 of a forward+backward)",
        "assumptions": "activations scale with activation_units (conv outputs x3, per token 8H + 2I + 2 heads x T); "
                       "bf16 halves fp32 bytes; no gradient checkpointing; ZeRO 2 with the step's unreduced "
                       "gradient held in full (coalesced reduction); loss memory O(B d) (fused loss)",
    }


def sweep(out: str, sub_batches: List[int], base: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(base["threads"]))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    for sb in sub_batches:
        p = dict(base, sub_batch=sb)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.grad_cache", "--point", json.dumps(p)],
                              capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else dict(p, status="error", reason=proc.stderr[-500:])
        rows.append(row)
        print(f"sub_batch {sb:4d}: {row.get('status')} peak {row.get('peak_bytes', 0) / MiB:8.1f} MiB, "
              f"{row.get('pairs_per_s', 0):6.2f} pairs/s", flush=True)
    with open(out, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return rows


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    plain = [r for r in ok if r["sub_batch"] == 0]
    cached = sorted((r for r in ok if r["sub_batch"] > 0), key=lambda r: r["sub_batch"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["sub_batch"] for r in cached]
    a.plot(xs, [r["peak_bytes"] / MiB for r in cached], "o-", label="gradient caching")
    b.plot(xs, [r["pairs_per_s"] for r in cached], "o-", label="gradient caching")
    for r in plain:
        a.axhline(r["peak_bytes"] / MiB, color="C1", ls="--", label="plain step (sub_batch 0)")
        b.axhline(r["pairs_per_s"], color="C1", ls="--", label="plain step (sub_batch 0)")
    batch = ok[0]["batch"] if ok else "?"
    a.set(xscale="log", xlabel="sub_batch (pairs)", ylabel="peak step memory (MiB)",
          title=f"contrastive batch {batch}, CPU fp32")
    b.set(xscale="log", xlabel="sub_batch (pairs)", ylabel="pairs/s", title="throughput")
    for ax in (a, b):
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--point", help="measure one point (JSON) and print 'RESULT <row>'")
    ap.add_argument("--out", help="JSONL results file of the sweep (the plot and the estimate sit beside it)")
    ap.add_argument("--replot", help="redraw the plot and the estimate of an existing JSONL results file")
    ap.add_argument("--sub-batches", type=int, nargs="+", default=[0, 32, 16, 8, 4])
    ap.add_argument("--batch", type=int, default=DEFAULT["batch"])
    ap.add_argument("--threads", type=int, default=DEFAULT["threads"])
    ap.add_argument("--model", default="{}", help="JSON overrides of the tower sizes, e.g. '{\"conv_dim\": 32}'")
    args = ap.parse_args(argv)
    if args.point:
        print("RESULT " + json.dumps(measure_point(dict(DEFAULT, **json.loads(args.point)))), flush=True)
        return 0
    if args.replot:
        with open(args.replot) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        args.out = args.replot
    elif not args.out:
        ap.error("--out is required for a sweep")
    elif any(sb < 0 or sb > args.batch for sb in args.sub_batches):
        ap.error(f"--sub-batches must lie in [0, --batch = {args.batch}]")
    else:
        rows = sweep(args.out, args.sub_batches,
                     dict(DEFAULT, batch=args.batch, threads=args.threads, **json.loads(args.model)))
    base = os.path.splitext(args.out)[0]
    plot(rows, base + ".png")
    if sum(r["status"] == "ok" and r["sub_batch"] > 0 for r in rows) >= 2:
        with open(base + "_estimate.json", "w") as fh:
            json.dump(estimate(rows), fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
