"""Loss providers compared by the benchmarks, their benchmark inputs, and dense-memory estimates.

A provider turns benchmark inputs into a zero-argument closure returning the 0-d loss. Providers:

* ``reference`` - ``smooth_clap_loss(..., backend="reference")``: dense B x B fp32 matrices.
* ``chunked``   - ``smooth_clap_loss(..., backend="chunked")``: blockwise PyTorch, O(B (d + block)).
* ``triton``    - ``smooth_clap_loss(..., backend="triton")``: fused kernels (CUDA only here; on a CPU they
  run only in Triton's interpreter, far too slow to time, so CPU rows record a skip).
* ``open_clip`` - open_clip's ``ClipLoss`` at world size 1: the hard CLAP loss (no soft targets).
* ``inf_cl``    - inf-cl's ``cal_inf_loss`` (Triton, CUDA only): one direction per call, so the symmetric
  hard loss is the mean of the audio->text and text->audio calls (logit_scale multiplied into the first
  argument). It computes the logits in fp32.

Loss kinds: ``hard`` (K = 0, CLAP) and ``smooth2`` (SmoothCLAP, K = 2 sources: an 88-d paralinguistic
source such as eGeMAPS functionals and a d-dim text-embedding source, weights (0.5, 0.5),
temperatures (0.07, 0.07), soft_weight beta = 0.1).
"""
from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

PROVIDERS = ("reference", "chunked", "triton", "open_clip", "inf_cl")
MODES = ("forward", "backward", "forward+backward")
KINDS = ("hard", "smooth2")
DTYPE_NAMES = ("fp32", "bf16")

PARALINGUISTIC_DIM = 88  # eGeMAPSv02 functionals
SOURCE_WEIGHTS = (0.5, 0.5)
SOURCE_TEMPERATURES = (0.07, 0.07)
SOFT_WEIGHT = 0.1
LOGIT_SCALE = 1.0 / 0.07  # open_clip's initial exp(logit_scale)

# Live B x B fp32 matrices at the dense providers' memory peak, per loss kind and mode: the peak RSS delta
# divided by 4 B^2, measured on the CPU at B = 2048 and 4096 in benchmarks/results/cpu_2026-11-23.jsonl (hard:
# 5.0-5.1 / 2.0 / 5.0, smooth2: 7.2-7.3 / 2.0 / 7.2-7.3, open_clip: 4.25-4.5 / 2.0 / 4.25-4.5 for forward /
# backward / forward+backward), rounded up with a margin. The (B, d) terms are
# left out. "backward" is measured above the state after the forward (saved tensors excluded), as the
# sweep does.
REFERENCE_BXB_MATRICES: Dict[Tuple[str, str], int] = {
    ("hard", "forward"): 6,
    ("hard", "backward"): 2,
    ("hard", "forward+backward"): 6,
    ("smooth2", "forward"): 8,
    ("smooth2", "backward"): 2,
    ("smooth2", "forward+backward"): 8,
}
OPEN_CLIP_BXB_MATRICES: Dict[str, int] = {"forward": 5, "backward": 2, "forward+backward": 5}


@dataclass
class LossInputs:
    """Benchmark inputs: unit-norm features that require grad, logit_scale, and the detached sources."""

    audio_features: torch.Tensor
    text_features: torch.Tensor
    logit_scale: torch.Tensor
    sources: Tuple[torch.Tensor, ...]

    def params(self) -> Tuple[torch.Tensor, ...]:
        return (self.audio_features, self.text_features, self.logit_scale)


def make_inputs(batch: int, dim: int, kind: str, dtype: torch.dtype, device: str, seed: int = 0) -> LossInputs:
    """Random L2-normalised (B, d) features in ``dtype`` (leaf tensors requiring grad), a 0-d fp32
    logit_scale requiring grad and, for ``smooth2``, two fp32 sources (B, 88) and (B, d)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)

    def unit(rows: int, cols: int) -> torch.Tensor:
        t = torch.nn.functional.normalize(torch.randn(rows, cols, generator=g), dim=-1)
        return t.to(device=device, dtype=dtype).requires_grad_(True)

    x, y = unit(batch, dim), unit(batch, dim)
    scale = torch.tensor(LOGIT_SCALE, device=device, requires_grad=True)
    sources: Tuple[torch.Tensor, ...] = ()
    if kind == "smooth2":
        sources = (
            torch.randn(batch, PARALINGUISTIC_DIM, generator=g).to(device),
            torch.randn(batch, dim, generator=g).to(device),
        )
    elif kind != "hard":
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return LossInputs(x, y, scale, sources)


def _load_open_clip_loss():
    """open_clip's loss.py alone (``import open_clip`` pulls torchvision, which cannot load beside CPU torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "loss.py"
    mod_spec = importlib.util.spec_from_file_location("open_clip_loss_only", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _inf_cl_head_dim(dim: int) -> Optional[int]:
    return next((h for h in (256, 128, 64, 32, 16) if dim % h == 0), None)


def skip_reason(provider: str, kind: str, device: str, dim: int) -> Optional[str]:
    """Why ``provider`` cannot be timed for this configuration, or None when it can."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    on_gpu = device.startswith("cuda")
    if provider in ("open_clip", "inf_cl") and kind != "hard":
        return f"{provider} computes the hard CLAP loss only (no soft targets)"
    if provider == "triton":
        if not on_gpu:
            return ("triton backend runs on a CPU only in Triton's interpreter (TRITON_INTERPRET=1): "
                    "far too slow to time")
        if importlib.util.find_spec("fastclap.losses.smooth_clap_triton") is None:
            return "fastclap.losses.smooth_clap_triton is not available in this build"
    if provider == "open_clip" and importlib.util.find_spec("open_clip") is None:
        return "open-clip-torch is not installed"
    if provider == "inf_cl":
        if not on_gpu:
            return "inf-cl is Triton-only and needs CUDA"
        if importlib.util.find_spec("inf_cl") is None:
            return "inf-cl is not installed (pip install inf-cl, extra gpu-bench)"
        if _inf_cl_head_dim(dim) is None:
            return f"inf-cl needs d divisible by 16, got d = {dim}"
    return None


def make_loss_fn(provider: str, inputs: LossInputs) -> Callable[[], torch.Tensor]:
    """Zero-argument closure computing the provider's 0-d loss on ``inputs`` (graph attached)."""
    x, y, s, sources = inputs.audio_features, inputs.text_features, inputs.logit_scale, inputs.sources
    if provider in ("reference", "chunked", "triton"):
        from fastclap import smooth_clap_loss

        if sources:
            return lambda: smooth_clap_loss(
                x, y, s, sources, soft_weight=SOFT_WEIGHT, source_weights=SOURCE_WEIGHTS,
                source_temperatures=SOURCE_TEMPERATURES, backend=provider,
            )
        return lambda: smooth_clap_loss(x, y, s, None, soft_weight=0.0, backend=provider)
    if sources:
        raise ValueError(f"{provider} computes the hard loss only")
    if provider == "open_clip":
        clip_loss = _load_open_clip_loss().ClipLoss()
        return lambda: clip_loss(x, y, s)
    if provider == "inf_cl":
        from inf_cl import cal_inf_loss

        head_dim = _inf_cl_head_dim(x.shape[1])
        # logit_scale applied here: cal_inf_loss's own ``scale`` argument all-reduces its gradient, which
        # needs an initialised process group; without one it takes the single-GPU flash path.
        return lambda: 0.5 * (
            cal_inf_loss(s * x, y, head_dim=head_dim) + cal_inf_loss(s * y, x, head_dim=head_dim)
        )
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def estimated_peak_bytes(
    provider: str, kind: str, mode: str, batch: int, dtype: str = "fp32"
) -> Optional[int]:
    """Peak loss memory (bytes) of the dense providers: live B x B matrices x B^2 x element size; None
    for the others. The reference computes its logits in fp32 whatever the input dtype; open_clip in
    the input dtype."""
    if provider == "reference":
        return REFERENCE_BXB_MATRICES[(kind, mode)] * 4 * batch * batch
    if provider == "open_clip":
        return OPEN_CLIP_BXB_MATRICES[mode] * (2 if dtype == "bf16" else 4) * batch * batch
    return None


def __getattr__(name: str):  # PEP 562: DTYPES imports torch on first use, so the sweep's --help stays light
    if name == "DTYPES":
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
