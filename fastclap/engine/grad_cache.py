"""Gradient caching inside a DeepSpeed engine: a contrastive batch larger than the encoders' memory.

GradCache (Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup", RepL4NLP 2021) splits one step in two passes. The loss L(X, Y, s) depends on the parameters only
through the embeddings X = f(audio), Y = g(text) and the temperature s, so by the chain rule

    dL/dtheta = sum over sub-batches k of  <dL/dX_k, dX_k/dtheta> + <dL/dY_k, dY_k/dtheta>  (+ dL/ds ds/dtheta).

Pass 1 embeds the rank's micro batch sub-batch by sub-batch without autograd graphs, keeping only X and Y
(O(B d) memory), and records the random state (CPU and CUDA) in front of each sub-batch. The loss then runs
once over the whole global contrastive batch (all ranks' embeddings, as in the plain step) on leaf copies of
X, Y and s, and its backward leaves dL/dX, dL/dY, dL/ds. Pass 2 runs each sub-batch again with its graph
after restoring its recorded random state (so dropout draws the same masks as in pass 1) and back-propagates
the surrogate <X_k, dL/dX_k> + <Y_k, dL/dY_k> (+ s dL/ds in the first sub-batch), whose parameter gradient
is exactly the sub-batch's term above. Peak activation memory is that of one sub-batch; the cost is one extra
forward of both towers.

DeepSpeed: every sub-batch backward goes through ``engine.backward`` (ZeRO's hooks and loss scaling apply)
and the step's gradients are reduced across ranks once:
* ZeRO 1, 2, 3: inside ``engine.coalesce_grad_reduction()``, which keeps the sub-batch gradients local and
  reduces their sum once on exit (under ZeRO-3 parameters are still gathered per sub-batch, while the
  unreduced gradient is held in full until the step's single reduce-scatter);
* ZeRO 0 (fp32 or DeepSpeed's bf16 wrapper): ``engine.no_sync()`` around all but the last sub-batch, whose
  backward all-reduces the accumulated sum.
DeepSpeed's 1 / gradient_accumulation_steps scaling is never applied per sub-batch (gradient caching requires
gradient_accumulation_steps 1, fastclap.config.deepspeed_keys.check_grad_cache).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional

import torch

FEATURES = ("audio_features", "text_features")


def split_batch(batch: Dict[str, Any], size: int) -> List[Dict[str, Any]]:
    """Consecutive sub-batches of at most ``size`` pairs of a collated batch (the last may be smaller).

    Tensors and lists whose first dimension is the batch size are sliced along it; any other entry is shared.
    Padding is kept as in the whole batch, so each row is computed exactly as in the full forward.

    Raises:
        ValueError: ``size`` < 1, or a batch without ``captions`` (the pair count).
    """
    if size < 1:
        raise ValueError(f"sub-batch size must be >= 1, got {size}")
    if "captions" not in batch:
        raise ValueError("batch has no 'captions' to count its pairs")
    n = len(batch["captions"])
    parts = []
    for start in range(0, n, size):
        rows = slice(start, min(n, start + size))
        part = {}
        for k, v in batch.items():
            sized = (torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n) or (isinstance(v, (list, tuple))
                                                                                   and len(v) == n)
            part[k] = v[rows] if sized else v
        parts.append(part)
    return parts


class RandomState:
    """The torch random state of the CPU and of one CUDA device (captured at construction)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


class GradCache:
    """Two-pass training step of a DeepSpeed engine over a CLAP model (see the module docstring).

    Usage, in place of ``out = engine(batch)`` ... ``engine.backward(loss)``::

        cache = GradCache(engine, sub_batch=64, device=device)
        out = cache.forward(batch)          # no graphs; audio/text features are leaves that require grad
        loss = loss_fn(out["audio_features"], out["text_features"], out["logit_scale"], ...)
        cache.backward(loss)                # loss backward to the embeddings, then the sub-batch backwards
        engine.step()

    ``forward`` returns the model's output dict for the whole micro batch: ``audio_features`` (B, D),
    ``text_features`` (B, D), ``logit_scale`` (0-d fp32) as leaves, ``text_embeddings`` (B, H) detached.
    The random state after ``backward`` is the one after pass 1, so the run's random stream is that of one
    forward per sub-batch.
    """

    def __init__(self, engine: Any, sub_batch: int, device: torch.device) -> None:
        self.engine, self.sub_batch, self.device = engine, sub_batch, device
        self._parts: List[Dict[str, Any]] = []
        self._states: List[RandomState] = []
        self._leaves: Dict[str, torch.Tensor] = {}
        self._sizes: List[int] = []
        self._after: Optional[RandomState] = None

    def forward(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Pass 1: embed every sub-batch without graphs. Returns the whole micro batch's outputs (see class)."""
        self._parts = split_batch(batch, self.sub_batch)
        self._states, outs = [], []
        with torch.no_grad():
            for part in self._parts:
                self._states.append(RandomState(self.device))
                outs.append(self.engine(part))
        self._after = RandomState(self.device)
        self._sizes = [len(p["captions"]) for p in self._parts]
        leaves = {k: torch.cat([o[k] for o in outs]).requires_grad_(True) for k in FEATURES}
        leaves["logit_scale"] = outs[0]["logit_scale"].detach().clone().requires_grad_(True)
        self._leaves = leaves
        return dict(leaves, text_embeddings=torch.cat([o["text_embeddings"] for o in outs]))

    def backward(self, loss: torch.Tensor) -> None:
        """The loss's backward to the cached embeddings (with its cross-rank collectives), then pass 2."""
        if not self._parts:
            raise RuntimeError("GradCache.backward called without a forward")
        loss.backward()
        grads = {k: (v.grad.split(self._sizes) if v.grad is not None else [None] * len(self._sizes))
                 for k, v in self._leaves.items() if k in FEATURES}
        scale_grad = self._leaves["logit_scale"].grad
        last = len(self._parts) - 1
        with self._reduce_once() as before_last:
            for i, (part, state) in enumerate(zip(self._parts, self._states)):
                state.restore()
                out = self.engine(part)
                terms = [(out[k].float() * grads[k][i].float()).sum() for k in FEATURES if grads[k][i] is not None]
                if i == 0 and scale_grad is not None:
                    terms.append((out["logit_scale"].float() * scale_grad.float()).sum())
                with before_last(i == last):
                    self.engine.backward(torch.stack(terms).sum())
        self._after.restore()  # type: ignore[union-attr]
        self._parts, self._states, self._leaves = [], [], {}

    @contextlib.contextmanager
    def _reduce_once(self):
        """Context for pass 2 that yields ``before_last(is_last)``: a context around one sub-batch backward so
        that the step's gradients are reduced across ranks once (see the module docstring)."""
        engine = self.engine
        if engine.zero_optimization_stage() >= 1 and hasattr(engine.optimizer, "_coalesce_grad_reduction"):
            with engine.coalesce_grad_reduction():
                yield lambda is_last: contextlib.nullcontext()
            return
        if engine.zero_optimization_partition_gradients():
            raise RuntimeError("gradient caching under ZeRO 2/3 needs engine.coalesce_grad_reduction(), which this "
                               "DeepSpeed lacks (constraints.txt pins one that has it)")
        yield lambda is_last: contextlib.nullcontext() if is_last else engine.no_sync()


def make_grad_cache(engine: Any, sub_batch: int, device: torch.device) -> Optional[GradCache]:
    """A :class:`GradCache` for ``sub_batch`` >= 1 pairs per sub-batch, None for 0 (gradient caching off)."""
    return GradCache(engine, sub_batch, device) if sub_batch else None
