"""Worker for the 2-process gloo tests of fastclap.compat: on every rank, each case runs the peer loss (open_clip
or LAION-CLAP loaded from its loss.py) and fastclap's drop-in on the same rows of one shared global batch and
saves both losses and both sets of gradients (imported by spawned processes)."""
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from peer_losses import laion_clap_loss, open_clip_loss

MODES = [(False, False), (False, True), (True, False), (True, True)]  # (local_loss, gather_with_grad)
SIGLIP_IMPLS = ["bidir", "shift", "reduce", "gather"]


def cases():
    """(family, local_loss | dist_impl, gather_with_grad | chunk_size | "triton", variant) for every distributed mode."""
    out = [("clip", ll, gw, "") for ll, gw in MODES]
    out += [("distill", ll, gw, "") for ll, gw in MODES]
    out += [("laion", ll, gw, v) for ll, gw in MODES for v in ("plain", "mlp", "weighted")]
    out += [("siglip", impl, chunk, "") for impl in SIGLIP_IMPLS for chunk in (0, 3)]
    out += [("siglip", "bidir", "triton", "")]  # the fused kernels (interpreter) on a rank's stripe
    out += [("clip_soft", ll, gw, "") for ll, gw in MODES]  # SmoothCLAP targets: no peer has them, see _soft_peer
    out += [("siglip_soft", "bidir", chunk, "") for chunk in (0, "triton")]
    return out


SOFT = dict(soft_weight=0.3, source_weights=(0.4, 0.6), source_temperatures=(0.1, 0.5))


def _soft_peer(oc, case, rank, world, sources_global, rows):
    """Dense peers of the soft-target cases: open_clip's own gather_features (CLIP) or torch.distributed.nn's
    differentiable all_gather (sigmoid), then the dense specifications of fastclap.losses on the gathered rows."""
    import torch.distributed.nn

    from fastclap.losses.smooth_clap_local import reference_directional_loss_sum
    from fastclap.losses.siglip_reference import reference_sigmoid_loss

    family, local_loss, gather_with_grad, _ = case
    w, taus, beta = SOFT["source_weights"], SOFT["source_temperatures"], SOFT["soft_weight"]
    own = [u[rows] for u in sources_global]
    if family == "siglip_soft":
        def peer(x, y, s, b):
            all_y = torch.cat(torch.distributed.nn.all_gather(y), dim=0)
            return reference_sigmoid_loss(x, all_y, s, b, own, sources_global, w, taus, beta, rows.start)
        return peer

    def peer(x, y, s):
        all_x, all_y = oc.gather_features(x, y, local_loss, gather_with_grad, rank, world)
        if local_loss:
            anchors_x, anchors_y, anchor_src, offset = x, y, own, rows.start
        else:
            anchors_x, anchors_y, anchor_src, offset = all_x, all_y, sources_global, 0
        a2t = reference_directional_loss_sum(anchors_x, all_y, s, anchor_src, sources_global, w, taus, beta, offset)
        t2a = reference_directional_loss_sum(anchors_y, all_x, s, anchor_src, sources_global, w, taus, beta, offset)
        return (a2t + t2a) / (2 * anchors_x.shape[0])
    return peer


def global_batch(batch, dim, seed=321):
    """Seven L2-normalised (batch, d) matrices shared by all ranks (features, MLP features, a teacher)."""
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(batch, dim + (2 if k >= 5 else 0), generator=g), dim=-1) for k in range(7)]


def _build(case, rank, world, compat_oc, compat_lc, oc, lc, mats, rows):
    """(peer loss fn, fastclap loss fn, index of the global matrices used as differentiable inputs, constants)."""
    family, a, b, variant = case
    if family in ("clip_soft", "siglip_soft"):
        sources = [torch.randn(len(mats[0]), k, generator=torch.Generator().manual_seed(k)) for k in (5, 11)]
        peer = _soft_peer(oc, case, rank, world, sources, rows)
        if family == "clip_soft":
            ours = compat_oc.ClipLoss(local_loss=a, gather_with_grad=b, rank=rank, world_size=world, **SOFT)
        else:
            ours = compat_oc.SigLipLoss(rank=rank, world_size=world, dist_impl=a, **SOFT,
                                        **(dict(backend="triton") if b == "triton" else dict(chunk_size=3)))
        own = tuple(u[rows] for u in sources)
        return peer, lambda *t: ours(*t, soft_target_features=own), [0, 1], None
    if family == "clip":
        kw = dict(local_loss=a, gather_with_grad=b, rank=rank, world_size=world)
        return oc.ClipLoss(**kw), compat_oc.ClipLoss(**kw), [0, 1], [torch.tensor(14.3)]
    if family == "distill":
        kw = dict(local_loss=a, gather_with_grad=b, rank=rank, world_size=world)
        peer, ours = oc.DistillClipLoss(**kw), compat_oc.DistillClipLoss(**kw)
        return (lambda *t: sum(w * v for w, v in zip((1.0, 2.0), peer(*t))),
                lambda *t: sum(w * v for w, v in zip((1.0, 2.0), ours(*t))), [0, 1], "teacher")
    if family == "siglip":
        kw = dict(rank=rank, world_size=world, dist_impl=a)
        ours = compat_oc.SigLipLoss(backend="triton", **kw) if b == "triton" else compat_oc.SigLipLoss(chunk_size=b, **kw)
        return (oc.SigLipLoss(**kw), ours, [0, 1],
                [torch.tensor(10.0), torch.tensor(-5.0)])
    kw = dict(local_loss=a, gather_with_grad=b, rank=rank, world_size=world, mlp_loss=variant == "mlp",
              weight_loss_kappa=2.0 if variant == "weighted" else 0)
    if variant == "mlp":
        return lc.ClipLoss(**kw), compat_lc.ClipLoss(**kw), [0, 1], "mlp"
    return lc.ClipLoss(**kw), compat_lc.ClipLoss(**kw), [0, 1], [torch.tensor(14.3)]


def compat_worker(rank, world_size, init_method, out_dir, batch, dim):
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        from fastclap.compat import laion_clap as compat_lc
        from fastclap.compat import open_clip as compat_oc

        oc, lc = open_clip_loss(), laion_clap_loss()
        mats = global_batch(batch, dim)
        rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)
        results = {}
        for case in cases():
            peer, ours, _, extra = _build(case, rank, world_size, compat_oc, compat_lc, oc, lc, mats, rows)
            per_impl = []
            for fn in (peer, ours):
                x = mats[0][rows].clone().requires_grad_(True)
                y = mats[1][rows].clone().requires_grad_(True)
                s = torch.tensor(14.3, requires_grad=True)
                leaves = [x, y, s]
                if extra == "teacher":
                    args = (x, y, s, mats[5][rows], mats[6][rows], torch.tensor(9.0))
                elif extra == "mlp":
                    st = torch.tensor(7.0, requires_grad=True)
                    xm = mats[2][rows].clone().requires_grad_(True)
                    ym = mats[3][rows].clone().requires_grad_(True)
                    leaves += [st, xm, ym]
                    args = (x, y, s, st, xm, ym)
                elif case[0] in ("siglip", "siglip_soft"):
                    bias = torch.tensor(-5.0, requires_grad=True)
                    leaves.append(bias)
                    args = (x, y, s, bias)
                else:
                    args = (x, y, s)
                loss = fn(*args)
                loss.backward()
                per_impl.append({"loss": loss.detach(),
                                 "grads": [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]})
            results[case] = per_impl
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
