"""The training run behind ``fastclap train`` / ``deepspeed fastclap/train.py`` (fastclap/train.py parses the
command line and imports this module only when it trains, so ``--help`` answers without torch).

One step: a contrastive batch of (audio crop, caption) pairs -> audio and text embeddings (gathered over
ranks) -> SmoothCLAP loss with soft targets from the paralinguistic functionals and the caption embeddings ->
DeepSpeed backward/step -> clamp the temperature.
"""
import argparse
import os
import itertools
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from fastclap import RankNContrastLoss, SmoothCLAPLoss
from fastclap.losses.combined import ContrastiveRnCLoss
from fastclap.config import check_deepspeed_section, check_grad_cache, load_config, resolve_path, to_dict
from fastclap.engine import checkpoint, reconfigure
from fastclap.serialization import WriteError, write_json
from fastclap.engine.fingerprint import check_unchanged, fingerprint, record_config_change
from fastclap.engine.data import build_corpora, copy_prepared_artifacts, fit_lld_stats, iterate_steps, StepBatches
from fastclap.engine.console import eval_line, quiet_deepspeed_handlers, quiet_libraries, summary_line
from fastclap.engine.distributed import all_ranks_true, init_distributed, mean_over_ranks
from fastclap.engine.grad_cache import make_grad_cache
from fastclap.engine.metrics import LossTimer, MetricsWriter, sync_device
from fastclap.engine.preflight import check_sizes
from fastclap.engine.runlock import RunLock
from fastclap.engine.setup import build_engine, clamp_logit_scale
from fastclap.evaluation.metrics import classification_metrics, zero_shot_predict
from fastclap.model import CLAPModel, save_exported
from fastclap.model.export import full_fp32_state_dict


def build_loss(cfg, rank: int = 0, world: int = 1) -> torch.nn.Module:
    """The configured loss over the global batch: with world > 1 it all-gathers features and sources itself
    (local_loss + gather_with_grad: every parameter gradient equals the single-process one, spec section 3).

    ``loss.name`` "rnc" gives the Rank-N-Contrast loss alone; "smoothclap" / "clap" with ``rnc_weight`` > 0 give
    L_(Smooth)CLAP + rnc_weight * L_RnC (:class:`fastclap.losses.combined.ContrastiveRnCLoss`)."""
    multi = dict(local_loss=world > 1, gather_with_grad=world > 1, rank=rank, world_size=world)
    lo = cfg.loss
    contrastive = None if lo.name == "rnc" else SmoothCLAPLoss(
        soft_weight=lo.soft_weight if lo.name == "smoothclap" else 0.0,
        source_weights=(1.0 - lo.gamma, lo.gamma), source_temperatures=lo.temperatures, backend=lo.backend, **multi)
    if lo.name != "rnc" and lo.rnc_weight == 0.0:
        return contrastive
    rnc = RankNContrastLoss(distance=lo.rnc_distance, backend="reference" if lo.backend == "reference" else "auto",
                            **multi)
    return ContrastiveRnCLoss(contrastive, rnc, lo.rnc_weight)


def uses_rnc(cfg) -> bool:
    """Whether the configured objective has a Rank-N-Contrast term (it then needs valence-arousal labels)."""
    return cfg.loss.name == "rnc" or cfg.loss.rnc_weight > 0.0


def loss_labels(batch: Dict[str, Any], cfg, device: torch.device) -> Dict[str, torch.Tensor]:
    """``{"labels": (B, rnc_dims) fp32}`` valence, arousal[, dominance] of this rank's pairs for an objective
    with an RnC term, else ``{}`` (keyword arguments of the loss call)."""
    if not uses_rnc(cfg):
        return {}
    return {"labels": batch["va"][:, :cfg.loss.rnc_dims].to(device, torch.float32)}


def loss_inputs(out: Dict[str, torch.Tensor], batch: Dict[str, Any], cfg) -> tuple:
    """(audio_features, text_features, soft-target sources) of this rank's pairs.

    Sources: audio-audio = z-normalised eGeMAPS functionals ("paraling") or the audio features, text-text =
    the pooled caption embeddings or the text features; all detached. None for the hard CLAP loss."""
    x, y = out["audio_features"], out["text_features"]
    if cfg.loss.name in ("clap", "rnc") or cfg.loss.soft_weight == 0.0:
        return x, y, None
    audio_src = (batch["paraling"].to(x.device, torch.float32) if cfg.loss.audio_source == "paraling"
                 else out["audio_features"].detach())
    text_src = out["text_embeddings"] if cfg.loss.text_source == "text_embeddings" else out["text_features"]
    return x, y, [audio_src.detach(), text_src.detach()]


@torch.no_grad()
def evaluate(engine, dataset, collate, cfg, loss_fn) -> Dict[str, float]:
    """Mean loss over evaluation batches and zero-shot UAR / WAR over the label words (ParaCLAP protocol)."""
    from torch.utils.data import DataLoader

    engine.eval()
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, shuffle=False, collate_fn=collate,
                        generator=torch.Generator())
    losses, audio, labels = [], [], []
    for batch in itertools.islice(loader, cfg.eval.max_batches or None):
        out = engine(batch)
        x, y, sources = loss_inputs(out, batch, cfg)
        losses.append(float(loss_fn(x, y, out["logit_scale"], soft_target_features=sources,
                                    **loss_labels(batch, cfg, x.device))))
        audio.append(out["audio_features"].float())
        labels += list(batch["shared_labels" if cfg.eval.label_space == "shared" else "labels"])
    keep = list(range(len(labels)))
    if cfg.eval.label_space == "shared":  # clips of the four shared classes only ("" for the others)
        keep = [i for i in keep if labels[i]]
        if not keep:
            raise ValueError("fastclap.eval.label_space 'shared': the evaluation split has no clip of a shared class")
    classes = sorted({labels[i] for i in keep})
    prompts = engine.module.encode_text([cfg.eval.prompt.format(label=c) for c in classes]).float()
    scores = classification_metrics([classes.index(labels[i]) for i in keep],
                                    zero_shot_predict(torch.cat(audio)[keep], prompts).tolist(), classes)
    engine.train()
    return {"eval/loss": float(np.mean(losses)), "eval/uar": scores["uar"], "eval/war": scores["war"],
            "eval/chance": scores["chance_uar"]}



def dry_run(args: argparse.Namespace) -> Dict[str, Any]:
    """``--dry-run``: what a run of this config needs, without data or training. Checks the config (DeepSpeed
    section for one process on this machine), loads the GE2E encoder's weights when the audio input or tower
    uses them (FileNotFoundError naming the install line without the resemblyzer wheel), builds the model (the
    text tower's weights included), prints one line per finding. Returns {"parameters", "ge2e_weights",
    "corpora": {root: found}}."""
    quiet_libraries(args.verbose)
    if not torch.cuda.is_available():  # as for a run (engine.distributed): no accelerator probe, no probe warning
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    ds_cfg, cfg = load_config(args.config, args.overrides)
    check_deepspeed_section(ds_cfg, on_cuda=torch.cuda.is_available(), world_size=1)
    audio = cfg.model.audio
    ge2e = None
    if cfg.data.input == "ge2e" or audio.kind == "ge2e" or "ge2e" in (getattr(audio, "fusion", None) or ()):
        from fastclap.model.ge2e import GE2EEncoder, resemblyzer_weights_path

        ge2e = resolve_path(audio.path) if audio.kind != "hf" and audio.path else resemblyzer_weights_path()
        GE2EEncoder(ge2e)  # loads the weights: a missing or unreadable file fails here, naming it
    model = CLAPModel(cfg.model)
    n_params = sum(p.numel() for p in model.parameters())
    corpora = {c.root: os.path.isdir(resolve_path(c.root)) for c in cfg.data.corpora if c.root}
    print(f"fastclap: dry run of {args.config}: model built, {n_params} parameters (audio tower {audio.kind}, text "
          f"tower {cfg.model.text.path}); GE2E weights: {ge2e or 'not needed'}", flush=True)
    for root, found in corpora.items():
        print(f"fastclap: corpus root {root}: {'found' if found else 'missing (needed to train)'}", flush=True)
    return {"parameters": n_params, "ge2e_weights": ge2e, "corpora": corpora}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Train with the parsed command line of fastclap/train.py; returns the summary (run_dir, steps, wall_s,
    history, last_eval). User errors raise (ValueError, OSError)."""
    quiet_libraries(args.verbose)
    ds_cfg, cfg = load_config(args.config, args.overrides)
    rank, world, device = init_distributed()
    quiet_deepspeed_handlers(args.verbose)
    check_deepspeed_section(ds_cfg, on_cuda=device.type == "cuda", world_size=world)
    check_sizes(ds_cfg, cfg, world, device)  # absurd sizes stop here, before any data or weight is allocated
    run_dir = resolve_path(cfg.run.dir)
    os.makedirs(run_dir, exist_ok=True)
    with RunLock(run_dir, rank):  # one trainer per run directory, for the life of the run
        return train(args, ds_cfg, cfg, rank, world, device, run_dir)

def train(args: argparse.Namespace, ds_cfg: Dict[str, Any], cfg, rank: int, world: int, device: torch.device,
          run_dir: str) -> Dict[str, Any]:
    if not args.resume:
        checkpoint.start_fresh(run_dir, cfg.run.overwrite, rank)
    # data, model, engine ---------------------------------------------------------------------------------
    data = build_corpora(cfg, run_dir, rank)
    if uses_rnc(cfg):  # every training clip needs valence-arousal coordinates: name the first one without
        for part in getattr(data.train, "datasets", [data.train]):
            getattr(part, "check_va", lambda: None)()
    # seeded after the data: whatever preparing them draws (a cold GE2E cache builds a network) cannot change the
    # model's initialisation or the dropout masks
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    model = CLAPModel(cfg.model)
    if cfg.data.input == "lld":
        model.audio_tower.set_input_stats(*fit_lld_stats(data.train))
    engine, _ = build_engine(model, ds_cfg, cfg)
    micro = engine.train_micro_batch_size_per_gpu()
    check_grad_cache(cfg.grad_cache, ds_cfg, micro)
    cache = make_grad_cache(engine, cfg.grad_cache.sub_batch, device)  # None: plain forward / backward
    order = StepBatches(len(data.train), micro, world, rank, cfg.run.seed)
    loss_fn, eval_loss_fn = build_loss(cfg, rank, world), build_loss(cfg)  # every rank evaluates all eval data
    metrics = MetricsWriter(run_dir, cfg.run.tensorboard, enabled=rank == 0)
    full_cfg = dict(ds_cfg, fastclap=to_dict(cfg))
    settings = fingerprint(full_cfg, world, micro)

    start = 0
    if args.resume:
        tag = checkpoint.choose(run_dir, args.resume_from, log=print)  # chosen (and logged) on rank 0 only
        changed = check_unchanged(checkpoint.read_fingerprint(run_dir, tag), settings, tag, args.allow_config_change)
        fresh = reconfigure.snapshot(engine)  # the new config's lrs and schedule, before the checkpoint's
        client = checkpoint.load(engine, run_dir, tag, rank)
        start = int(client["step"])
        if changed:  # allowed: the optimizer and schedule settings of the new config, at the resumed step
            reconfigure.apply(engine, fresh)
        metrics.truncate_after(start, log=print)
        metrics.write_missing(client.get(UNWRITTEN, []))  # records a full disk kept out of the log before the stop
        if changed and rank == 0:
            record_config_change(run_dir, full_cfg, start, changed)
    elif rank == 0:
        write_json(os.path.join(run_dir, "config.json"), full_cfg)
        copy_prepared_artifacts(data.prepared_dirs, run_dir)

    # training loop ---------------------------------------------------------------------------------------
    steps, global_batch = cfg.schedule.steps, order.global_batch
    bar = None
    if rank == 0 and cfg.run.progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True)
    timer, history, t_run, last_eval = LossTimer(), [], time.perf_counter(), None
    engine.train()
    step = start
    batches = iterate_steps(data.train, data.collate, order, start, cfg.data.num_workers)  # endless
    for step0, epoch, batch in itertools.islice(batches, max(0, steps - start)):
        t0 = time.perf_counter()
        out = engine(batch) if cache is None else cache.forward(batch)
        x, y, sources = loss_inputs(out, batch, cfg)
        timer.reset()
        x, y = timer.wrap(x), timer.wrap(y)
        timer.start(x.device)
        loss = loss_fn(x, y, out["logit_scale"], soft_target_features=sources, **loss_labels(batch, cfg, x.device))
        timer.stop_forward(loss)
        engine.backward(loss) if cache is None else cache.backward(loss)
        lr = engine.get_lr()[0]  # the lr this step uses (the scheduler advances inside engine.step)
        engine.step()
        clamp_logit_scale(engine, cfg.model.logit_scale_max)
        sync_device(device)
        step_s = time.perf_counter() - t0
        step = step0 + 1
        rec = {"step": step, "epoch": epoch, "loss": mean_over_ranks(loss.detach()), "lr": lr,
               "logit_scale": float(out["logit_scale"].detach()), "pairs_per_s": global_batch / step_s, "step_s": step_s,
               "loss_s": timer.seconds, "loss_share": timer.seconds / step_s}
        history.append(rec)
        if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_s']:.0f}")
            bar.update(1)
        records = [rec] if step % cfg.run.log_every == 0 or step == steps else []
        if cfg.eval.every and data.eval is not None and (step % cfg.eval.every == 0 or step == steps):
            last_eval = evaluate(engine, data.eval, data.collate, cfg, eval_loss_fn)
            records.append({"step": step, **last_eval})
            if rank == 0:
                (bar.write if bar is not None else print)(eval_line(step, steps, last_eval))
        unwritten, write_error = write_records(metrics, records)
        failed = not all_ranks_true(write_error is None) if world > 1 else write_error is not None
        if failed:  # rank 0's metrics or TensorBoard write failed (disk full): checkpoint this step, then stop
            stop_after_checkpoint(engine, run_dir, step, epoch, unwritten, write_error, cfg, rank, settings)
        if step == steps or (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0):
            checkpoint.save(engine, run_dir, step, {"epoch": epoch}, cfg.run.keep_checkpoints, rank, settings)
            if cfg.run.pause_after_checkpoint:
                time.sleep(cfg.run.pause_after_checkpoint)
    batches.close()  # stops the data loader's workers now
    if bar is not None:
        bar.close()
    if cfg.run.export:
        state = full_fp32_state_dict(engine.module)
        if rank == 0:
            save_exported(state, cfg.model, run_dir)
    metrics.close()
    wall = time.perf_counter() - t_run
    summary = {"run_dir": run_dir, "steps": step, "start_step": start, "global_batch": global_batch,
               "wall_s": wall, "history": history, "last_eval": last_eval}
    if rank == 0 and history:
        print(summary_line(history, wall, run_dir, last_eval), flush=True)
    return summary


UNWRITTEN = "unwritten_metrics"  # client-state key: metrics records the step could not write


def write_records(metrics: MetricsWriter, records: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]],
                                                                                   Optional[WriteError]]:
    """Write ``records`` in order; returns (the records not written, the WriteError that stopped them or None)."""
    for i, record in enumerate(records):
        try:
            metrics.write(record)
        except WriteError as err:
            return records[i:], err
    return [], None


def stop_after_checkpoint(engine: Any, run_dir: str, step: int, epoch: int, unwritten: List[Dict[str, Any]],
                          error: Optional[WriteError], cfg, rank: int, settings: Dict[str, Any]) -> None:
    """A metrics or TensorBoard write failed (disk full) on rank 0: save a checkpoint of this step (holding the
    unwritten records, which ``--resume`` appends) on every rank and stop.

    Raises:
        WriteError: always; on rank 0 the failed write's message (path, bytes, free space) and what was saved.
    """
    try:
        tag = checkpoint.save(engine, run_dir, step, {"epoch": epoch, UNWRITTEN: unwritten}, cfg.run.keep_checkpoints,
                              rank, settings)
        saved = f"training stopped after checkpoint {tag}; free space, then continue with --resume"
    except WriteError as err:
        saved = f"the checkpoint of step {step} could not be written either ({err}); --resume continues from " \
                f"the previous one"
    if error is None:  # another rank's failure
        raise WriteError(28, f"rank 0 could not write the metrics at step {step}; {saved}")
    raise WriteError(error.errno, f"{error.strerror}; {saved}") from error
