"""The peers' own training steps on the CPU, with their loss and with fastclap's drop-in (patched in).

``open_clip_steps`` runs ``open_clip_train.train.train_one_epoch`` (open-clip-torch's installed code) on a tiny
``open_clip.model.CLIP``; the loss comes from ``open_clip.factory.create_loss(args)``, open_clip's own or - inside
``fastclap.compat.open_clip.patched()`` - fastclap's. ``laion_clap_steps`` runs LAION-CLAP's
``training/train.py`` ``train_one_epoch`` (which builds its ``ClipLoss`` itself) on a tiny two-tower model with
LAION-CLAP's output contract, inside ``fastclap.compat.laion_clap.patched()`` for fastclap's loss. Both return
the losses the training code logged (its ``tb_writer.add_scalar`` calls), step by step.

What is stubbed, and why (nothing the steps call):

* open_clip: ``import open_clip`` imports ``torchvision`` (image transforms in ``open_clip/transform.py``,
  ``FrozenBatchNorm2d`` in ``open_clip/utils.py``), whose wheel cannot load beside the CPU torch. While
  open_clip is imported, ``torchvision``, ``torchvision.transforms`` (+ ``.functional``), ``torchvision.ops``
  and ``torchvision.ops.misc`` are placeholder modules whose classes raise if instantiated; they leave
  ``sys.modules`` right after. The steps feed image tensors: no transform and no frozen batch norm runs.
  ``open_clip_train.data`` (webdataset, torchvision datasets) is not imported: the data is an in-memory list of
  batches with the ``DataInfo`` interface ``train_one_epoch`` reads (``set_epoch``, ``dataloader.num_batches``,
  ``dataloader.num_samples``).
* LAION-CLAP: its scripts import ``clap_module`` and ``training`` as top-level packages from the ``laion_clap``
  folder. ``clap_module/__init__.py`` imports the audio / text towers (torchlibrosa, timm, transformers), which
  ``train_one_epoch`` never calls; ``clap_module`` is a package placeholder over the real folder (its
  ``__init__`` not run) exposing the real ``clap_module/loss.py``'s ``ClipLoss`` and ``gather_features``, the
  two names ``training/train.py`` imports from it. ``training`` and ``training/train.py`` are LAION-CLAP's.
"""
from __future__ import annotations

import contextlib
import copy
import enum
import importlib
import importlib.util
import math
import pathlib
import sys
import types
from typing import Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F

Logged = List[Dict[str, float]]
_TORCHVISION_NAMES = ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "Resize", "CenterCrop",
                      "ColorJitter", "Grayscale")


class _NotAvailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__}: torchvision placeholder (not installed beside the CPU torch)")


@contextlib.contextmanager
def _placeholder_modules(modules: Dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _torchvision_placeholders() -> Dict[str, types.ModuleType]:
    def module(name, **attrs):
        m = types.ModuleType(name, "placeholder: torchvision cannot load beside the CPU torch")
        m.__dict__.update(attrs)
        return m
    classes = {n: type(n, (_NotAvailable,), {}) for n in _TORCHVISION_NAMES}
    modes = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS")
    return {"torchvision": module("torchvision"),
            "torchvision.transforms": module("torchvision.transforms", InterpolationMode=modes, **classes),
            "torchvision.transforms.functional": module("torchvision.transforms.functional"),
            "torchvision.ops": module("torchvision.ops"),
            "torchvision.ops.misc": module("torchvision.ops.misc",
                                           FrozenBatchNorm2d=type("FrozenBatchNorm2d", (_NotAvailable,), {}))}


def import_open_clip_training():
    """(open_clip, open_clip_train.train), imported as installed (module doc: torchvision placeholders)."""
    if importlib.util.find_spec("open_clip") is None or importlib.util.find_spec("open_clip_train") is None:
        raise ImportError("open-clip-torch (with open_clip_train) is not installed")
    if "open_clip" not in sys.modules:
        if importlib.util.find_spec("transformers") is not None:
            importlib.import_module("transformers")  # probes for torchvision at import: before the placeholders
        with _placeholder_modules(_torchvision_placeholders()):
            importlib.import_module("open_clip")
    return importlib.import_module("open_clip"), importlib.import_module("open_clip_train.train")


def import_laion_clap_training():
    """LAION-CLAP's ``training.train`` module, imported as its scripts do (module doc: ``clap_module``)."""
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("laion-clap is not installed")
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    if "training.train" in sys.modules:
        return sys.modules["training.train"]
    if "clap_module" not in sys.modules:
        package = types.ModuleType("clap_module", "placeholder over LAION-CLAP's clap_module (its __init__ not run)")
        package.__path__ = [str(root / "clap_module")]
        sys.modules["clap_module"] = package
        loss = importlib.import_module("clap_module.loss")
        package.ClipLoss, package.gather_features, package.loss = loss.ClipLoss, loss.gather_features, loss
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("training.train")
    finally:
        sys.path.remove(str(root))


class _Recorder:
    """A tensorboard ``SummaryWriter`` stand-in: keeps what the training code logs, per step."""

    def __init__(self) -> None:
        self.steps: Dict[int, Dict[str, float]] = {}

    def add_scalar(self, name: str, value: float, step: int) -> None:
        self.steps.setdefault(step, {})[name] = float(value)

    def logged(self, prefix: str = "") -> Logged:
        return [{k[len(prefix):]: v for k, v in self.steps[s].items() if "loss" in k} for s in sorted(self.steps)]


class _Batches(list):
    """In-memory dataloader with the attributes the training loops read."""

    def __init__(self, batches, batch_size: int) -> None:
        super().__init__(batches)
        self.num_batches, self.num_samples = len(batches), len(batches) * batch_size


class _DataInfo:
    def __init__(self, dataloader) -> None:
        self.dataloader, self.sampler = dataloader, None

    def set_epoch(self, epoch: int) -> None:
        pass


def _tiny_clip(open_clip, embed_dim: int, width: int, logit_bias: Optional[float]):
    vision = dict(image_size=16, patch_size=8, width=width, head_width=16, layers=1)
    text = dict(context_length=6, vocab_size=40, width=width, heads=2, layers=1)
    return open_clip.model.CLIP(embed_dim, vision, text, init_logit_bias=logit_bias, output_dict=True)


def _open_clip_setup(open_clip, kind: str, precision: str, steps: int, batch: int, seed: int):
    """Tiny student (and teacher), batches and open_clip_train's ``args`` of one run; same seed, same state."""
    torch.manual_seed(seed)
    model = _tiny_clip(open_clip, 16, 32, -10.0 if kind == "siglip" else None)
    teacher = _tiny_clip(open_clip, 24, 32, None).eval() if kind == "distill" else None
    g = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(batch, 3, 16, 16, generator=g), torch.randint(1, 40, (batch, 6), generator=g))
               for _ in range(steps)]
    args = types.SimpleNamespace(
        device="cpu", precision=precision, distill=kind == "distill", siglip=kind == "siglip", model="tiny",
        accum_freq=1, skip_scheduler=True, horovod=False, grad_clip_norm=None, log_every_n_steps=1,
        batch_size=batch, world_size=1, rank=0, local_rank=0, wandb=False, local_loss=False,
        gather_with_grad=False, loss_dist_impl=None)
    return model, teacher, batches, args


def open_clip_steps(kind: str, precision: str, fastclap: bool, steps: int = 4, batch: int = 6,
                    seed: int = 0) -> Logged:
    """Losses logged by open_clip's ``train_one_epoch`` over ``steps`` steps.

    Args:
        kind: "clip", "siglip" (``--siglip``: logit bias, sigmoid loss) or "distill" (``--distill``: a frozen
            tiny teacher with another embedding width).
        precision: open_clip's ``--precision``: "fp32", "amp" (CPU fp16 autocast + GradScaler, as main.py sets
            it up) or "amp_bf16".
        fastclap: build the loss inside ``fastclap.compat.open_clip.patched()``.
    Returns:
        one dict per step of the logged losses ("contrastive_loss", "loss", "distill_loss").
    """
    open_clip, train = import_open_clip_training()
    from fastclap.compat import open_clip as compat

    model, teacher, batches, args = _open_clip_setup(open_clip, kind, precision, steps, batch, seed)
    with (compat.patched() if fastclap else contextlib.nullcontext()):
        loss = open_clip.factory.create_loss(args)
    expected = {"clip": "ClipLoss", "siglip": "SigLipLoss", "distill": "DistillClipLoss"}[kind]
    assert type(loss).__name__ == expected and type(loss).__module__.startswith("fastclap") == fastclap, type(loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device="cpu") if precision == "amp" else None
    writer = _Recorder()
    train.train_one_epoch(model, {"train": _DataInfo(_Batches(batches, batch))}, loss, 0, optimizer, scaler,
                          None, teacher, args, tb_writer=writer)
    return writer.logged("train/")


def open_clip_first_step_fp64(kind: str, precision: str, batch: int = 6, seed: int = 0) -> Dict[str, float]:
    """The first step's losses in fp64: the model's outputs of that step (its forward under the run's autocast,
    as ``train_one_epoch`` runs it) scored by open_clip's own loss classes on fp64 copies."""
    open_clip, train = import_open_clip_training()
    from open_clip import loss as peer

    model, teacher, batches, args = _open_clip_setup(open_clip, kind, precision, 1, batch, seed)
    images, texts = batches[0]
    with train.get_autocast(precision, device_type="cpu")(), torch.no_grad():
        out = model(images, texts)
        if teacher is not None:
            out.update({f"dist_{k}": v for k, v in teacher(images, texts).items()})
    out = {k: v.detach().double() for k, v in out.items()}
    cls = {"clip": peer.ClipLoss, "siglip": peer.SigLipLoss, "distill": peer.DistillClipLoss}[kind]
    losses = {k: float(v) for k, v in cls()(**out, output_dict=True).items()}
    return dict(losses, loss=sum(losses.values()))


class TinyCLAP(torch.nn.Module):
    """Two linear towers with LAION-CLAP's ``CLAP.forward`` contract: ``(audio_features, text_features,
    audio_features_mlp, text_features_mlp, logit_scale_a.exp(), logit_scale_t.exp())``, features normalised."""

    def __init__(self, audio_dim: int = 20, text_dim: int = 12, embed_dim: int = 16) -> None:
        super().__init__()
        self.audio, self.text = torch.nn.Linear(audio_dim, embed_dim), torch.nn.Linear(text_dim, embed_dim)
        self.audio_mlp = torch.nn.Sequential(torch.nn.Linear(embed_dim, embed_dim), torch.nn.ReLU(),
                                             torch.nn.Linear(embed_dim, embed_dim))
        self.text_mlp = copy.deepcopy(self.audio_mlp)
        self.logit_scale_a = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_scale_t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, audio, text, device=None):
        a, t = self.audio(audio["waveform"]), self.text(text)
        return (F.normalize(a, dim=-1), F.normalize(t, dim=-1), F.normalize(self.audio_mlp(a), dim=-1),
                F.normalize(self.text_mlp(t), dim=-1), self.logit_scale_a.exp(), self.logit_scale_t.exp())


def _laion_clap_setup(steps: int, batch: int, seed: int):
    torch.manual_seed(seed)
    model = TinyCLAP()
    g = torch.Generator().manual_seed(seed + 1)
    batches = [{"waveform": torch.randn(batch, 20, generator=g), "text": torch.randn(batch, 12, generator=g)}
               for _ in range(steps)]
    return model, batches


_AMP = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}


def laion_clap_steps(mlp_loss: bool, kappa: float, precision: str, fastclap: bool, steps: int = 4,
                     batch: int = 6, seed: int = 0) -> Logged:
    """Losses logged by LAION-CLAP's ``train_one_epoch`` (one batch per epoch, so that every step is logged:
    it logs every 100th batch and the last).

    Args:
        mlp_loss, kappa: ``--clap-mlploss`` and ``--kappa``.
        precision: "fp32", or "amp_bf16" / "amp_fp16": the whole ``train_one_epoch`` call runs inside
            ``torch.autocast("cpu")`` (LAION-CLAP's own ``--precision amp`` is ``torch.cuda.amp.autocast``, a
            no-op on the CPU) - model, loss and the backward called inside the region.
        fastclap: run inside ``fastclap.compat.laion_clap.patched()``.
    """
    train = import_laion_clap_training()
    from fastclap.compat import laion_clap as compat

    model, batches = _laion_clap_setup(steps, batch, seed)
    args = types.SimpleNamespace(
        device="cpu", precision="fp32", local_loss=False, gather_with_grad=False, rank=0, world_size=1,
        horovod=False, clap_mlploss=mlp_loss, kappa=kappa, distributed=False, dataset_type="synthetic",
        wandb=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    writer = _Recorder()
    with contextlib.ExitStack() as stack:
        if fastclap:
            stack.enter_context(compat.patched())
        if precision in _AMP:
            stack.enter_context(torch.autocast("cpu", dtype=_AMP[precision]))
        for epoch, b in enumerate(batches):
            assert (train.ClipLoss.__module__.startswith("fastclap")) == fastclap, train.ClipLoss
            train.train_one_epoch(model, {"train": _DataInfo(_Batches([b], batch))}, epoch, optimizer, None,
                                  lambda step: None, args, tb_writer=writer)
    return writer.logged("train/")


def laion_clap_first_step_fp64(mlp_loss: bool, kappa: float, precision: str, batch: int = 6,
                               seed: int = 0) -> Dict[str, float]:
    """The first step's loss in fp64: the tiny model's outputs (under the run's autocast) scored by
    LAION-CLAP's own ``clap_module/loss.py`` ``ClipLoss`` on fp64 copies."""
    import_laion_clap_training()
    peer = sys.modules["clap_module.loss"]
    model, batches = _laion_clap_setup(1, batch, seed)
    amp = torch.autocast("cpu", dtype=_AMP[precision]) if precision in _AMP else contextlib.nullcontext()
    with amp, torch.no_grad():
        out = [t.double() for t in model(batches[0], batches[0]["text"])]
    loss = peer.ClipLoss(mlp_loss=mlp_loss, weight_loss_kappa=kappa)
    a, t, a_mlp, t_mlp, scale_a, scale_t = out
    value = (loss(a, t, scale_a, scale_t, a_mlp, t_mlp) if mlp_loss else loss(a, t, scale_a))
    return {"loss": float(value)}
