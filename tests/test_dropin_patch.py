"""One-call patching: ``fastclap.compat.open_clip.patch()`` / ``unpatch()`` / ``patched()`` and the same for
LAION-CLAP, checked where the peers' training code looks its loss up (``open_clip.factory.create_loss``,
LAION-CLAP's ``training.train.ClipLoss``).

The peers are imported as ``benchmarks/peer_training.py`` imports them: open_clip with placeholder
``torchvision`` modules during its import (image transforms and ``FrozenBatchNorm2d``, never called here:
torchvision cannot load beside the CPU torch); LAION-CLAP's ``training/train.py`` with a ``clap_module``
package placeholder over the real folder that exposes the real ``clap_module/loss.py`` (its ``__init__`` imports
audio / text towers needing torchlibrosa and timm, which no test here calls).
"""
import importlib.util
import sys
import types

import pytest

from fastclap.compat import laion_clap as laion_compat
from fastclap.compat import open_clip as oc_compat

if importlib.util.find_spec("open_clip") is None or importlib.util.find_spec("laion_clap") is None:
    pytest.skip("open-clip-torch and laion-clap are installed by the test setup (.ci/run)", allow_module_level=True)
from benchmarks.peer_training import import_laion_clap_training, import_open_clip_training  # noqa: E402

NAMES = ("ClipLoss", "DistillClipLoss", "SigLipLoss")


@pytest.fixture
def open_clip():
    oc, _ = import_open_clip_training()
    yield oc
    oc_compat.unpatch()


@pytest.fixture
def laion_train():
    train = import_laion_clap_training()
    yield train
    laion_compat.unpatch()


def _args(**kw):
    base = dict(distill=False, siglip=False, model="ViT-tiny", local_loss=False, gather_with_grad=False, rank=0,
                world_size=1, horovod=False, loss_dist_impl=None, coca_caption_loss_weight=2.0,
                coca_contrastive_loss_weight=1.0)
    return types.SimpleNamespace(**dict(base, **kw))


def _built(open_clip):
    """Classes create_loss(args) builds for CLIP, SigLIP, distillation and CoCa."""
    create = open_clip.factory.create_loss
    return [type(create(_args(**kw))) for kw in ({}, {"siglip": True}, {"distill": True}, {"model": "coca_tiny"})]


def test_open_clip_patch_reaches_create_loss_and_unpatch_restores(open_clip):
    originals = {n: getattr(open_clip.loss, n) for n in NAMES}
    assert _built(open_clip)[:3] == [originals[n] for n in ("ClipLoss", "SigLipLoss", "DistillClipLoss")]
    sites = oc_compat.patch()
    for n in NAMES:
        assert f"open_clip.factory.{n}" in sites and f"open_clip.loss.{n}" in sites
        assert getattr(open_clip.factory, n) is getattr(oc_compat, n)
    assert "open_clip.ClipLoss" in sites and open_clip.ClipLoss is oc_compat.ClipLoss
    assert _built(open_clip) == [oc_compat.ClipLoss, oc_compat.SigLipLoss, oc_compat.DistillClipLoss,
                                 open_clip.loss.CoCaLoss]  # CoCa stays open_clip's
    assert oc_compat.patch() == []  # idempotent: nothing left to change
    assert open_clip.factory.ClipLoss is oc_compat.ClipLoss
    restored = oc_compat.unpatch()
    assert set(sites) <= set(restored)
    for n in NAMES:
        assert getattr(open_clip.factory, n) is originals[n] and getattr(open_clip.loss, n) is originals[n]
    assert _built(open_clip)[:3] == [originals[n] for n in ("ClipLoss", "SigLipLoss", "DistillClipLoss")]
    assert oc_compat.unpatch() == []


def test_open_clip_patched_context_and_modules_imported_meanwhile(open_clip):
    original = open_clip.loss.ClipLoss
    with oc_compat.patched() as sites:
        assert "open_clip.factory.ClipLoss" in sites
        assert type(open_clip.factory.create_loss(_args())) is oc_compat.ClipLoss
        # a module of the peer imported while patched binds fastclap's class; unpatching gives it back too
        late = types.ModuleType("open_clip_train.late_import")
        exec("from open_clip.loss import ClipLoss", late.__dict__)
        sys.modules[late.__name__] = late
        assert late.ClipLoss is oc_compat.ClipLoss
    try:
        assert open_clip.factory.ClipLoss is original and late.ClipLoss is original
    finally:
        del sys.modules[late.__name__]
    oc_compat.patch()
    with oc_compat.patched():
        pass
    assert open_clip.factory.ClipLoss is oc_compat.ClipLoss  # a patch made before the block stays


def test_laion_clap_patch_reaches_train_one_epoch_and_unpatch_restores(laion_train):
    original = laion_train.ClipLoss
    assert original.__module__ == "clap_module.loss"
    sites = laion_compat.patch()
    assert {"training.train.ClipLoss", "clap_module.ClipLoss", "clap_module.loss.ClipLoss"} <= set(sites)
    assert laion_train.ClipLoss is laion_compat.ClipLoss
    assert laion_compat.patch() == []
    laion_compat.unpatch()
    assert laion_train.ClipLoss is original and sys.modules["clap_module"].ClipLoss is original
    with laion_compat.patched():
        assert laion_train.ClipLoss is laion_compat.ClipLoss
    assert laion_train.ClipLoss is original


def test_patch_without_the_peer_names_the_problem(monkeypatch):
    """LAION-CLAP's loss code not importable: ImportError naming the package, nothing left half-patched."""
    for name in ("clap_module", "laion_clap"):
        monkeypatch.setitem(sys.modules, name, None)  # import of these names fails
    for name in ("clap_module.loss", "laion_clap.clap_module.loss"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match="needs an importable laion_clap"):
        laion_compat.patch()
    assert laion_compat.unpatch() == []
