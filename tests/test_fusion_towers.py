"""GE2E, functionals and fusion audio towers: pooling against the encoder itself, masks, the frozen cache,
gradients and learning rates, config checks, and a short training run through the engine (fp32, CPU)."""
import math

import numpy as np
import pytest
import torch

from fastclap.config import AudioTowerConfig, FastClapConfig, from_dict, validate
from fastclap.model.fusion_towers import FunctionalsEncoder, FusionEncoder, GE2ETower
from fastclap.model.ge2e import normalize_volume

pytest.importorskip("resemblyzer")  # the pretrained weights


def _batch(lengths, seed=0, t=None):
    g = torch.Generator().manual_seed(seed)
    t = t or max(lengths)
    wav = torch.zeros(len(lengths), t)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for b, n in enumerate(lengths):
        wav[b, :n] = 0.05 * torch.randn(n, generator=g)
        mask[b, :n] = 1
    return {"waveforms": wav, "attention_mask": mask, "paraling": torch.randn(len(lengths), 88, generator=g)}


@pytest.fixture(scope="module")
def frozen():
    return GE2ETower(AudioTowerConfig(kind="ge2e", trainable=False))


def test_ge2e_pooling_is_the_utterance_embedding_of_each_valid_clip(frozen):
    batch = _batch([16_000, 27_123, 40_000])  # padded rows: only the valid samples count
    got = frozen.forward_batch(batch, torch.device("cpu"), torch.float32)
    assert got.shape == (3, 256) and got.dtype == torch.float32
    with torch.no_grad():
        for b, n in enumerate([16_000, 27_123, 40_000]):
            want = frozen.encoder.embed_utterance(normalize_volume(batch["waveforms"][b, :n]))
            torch.testing.assert_close(got[b], want, atol=2e-6, rtol=0)


def test_fixed_volume_tower_gives_one_embedding_at_any_recording_gain():
    """fp32. model.audio.ge2e_volume "fixed": a clip and the same clip 20 dB louder (both above -30 dBFS) embed
    alike; with "raise" (resemblyzer's rule) the louder copy embeds differently."""
    fixed = GE2ETower(AudioTowerConfig(kind="ge2e", trainable=False, ge2e_volume="fixed"))
    raised = GE2ETower(AudioTowerConfig(kind="ge2e", trainable=False))
    batch = _batch([18_000, 26_000], seed=4)
    batch["waveforms"] = 2.0 * batch["waveforms"]  # -20 dBFS: above the target, so "raise" leaves it
    loud = dict(batch, waveforms=10.0 * batch["waveforms"])
    cpu = torch.device("cpu")
    torch.testing.assert_close(fixed.forward_batch(loud, cpu, torch.float32),
                               fixed.forward_batch(batch, cpu, torch.float32), atol=1e-5, rtol=0)
    diff = raised.forward_batch(loud, cpu, torch.float32) - raised.forward_batch(batch, cpu, torch.float32)
    assert diff.abs().max() > 1e-2


def test_frozen_cache_reuses_embeddings_and_is_exact(frozen):
    frozen.clear_cache()
    batch = _batch([20_000, 24_000], seed=1)
    first = frozen.forward_batch(batch, torch.device("cpu"), torch.float32)
    assert len(frozen._cache) == 2
    calls = []
    handle = frozen.encoder.lstm.register_forward_hook(lambda *a: calls.append(1))
    try:  # the same crops again, in another order, padded differently: no LSTM call, same vectors
        again = _batch([24_000, 20_000], seed=1, t=30_000)
        again["waveforms"][0, :24_000], again["waveforms"][1, :20_000] = (batch["waveforms"][1, :24_000],
                                                                          batch["waveforms"][0, :20_000])
        second = frozen.forward_batch(again, torch.device("cpu"), torch.float32)
    finally:
        handle.remove()
    assert calls == []
    torch.testing.assert_close(second, first.flip(0), atol=0, rtol=0)
    assert not any(p.requires_grad for p in frozen.encoder.parameters())


def test_trainable_ge2e_gets_gradients_and_its_own_lr():
    from fastclap.config import ModelConfig, TextTowerConfig
    from fastclap.model import CLAPModel

    cfg = ModelConfig(audio=AudioTowerConfig(kind="ge2e", trainable=True, lr=1e-5),
                      text=TextTowerConfig(hf_config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                                      "num_attention_heads": 2, "intermediate_size": 64,
                                                      "vocab_size": 30522}, tokenizer="builtin:all-MiniLM-L6-v2"),
                      embed_dim=16)
    model = CLAPModel(cfg)
    out = model.encode_audio(_batch([17_000, 20_000]))
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert model.audio_tower.encoder.lstm.weight_ih_l0.grad.abs().sum() > 0
    groups = {g["name"]: g["lr"] for g in model.param_groups(1e-3, 0.01)}
    assert groups["audio"] == 1e-5 and groups["heads"] == 1e-3


def test_attention_pooling_frames_ignore_padding_and_train():
    tower = GE2ETower(AudioTowerConfig(kind="ge2e", trainable=False, pooling="attention"))
    batch = _batch([18_000, 30_000], seed=2)
    got = tower.forward_batch(batch, torch.device("cpu"), torch.float32)
    alone = tower.forward_batch({"waveforms": batch["waveforms"][:1, :18_000]}, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(got[:1], alone, atol=1e-5, rtol=0)  # trailing padding never reaches a valid frame
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)
    got.sum().backward()
    assert tower.attention.weight.grad is not None and tower.attention.weight.grad.abs().sum() > 0
    assert tower.encoder.lstm.weight_ih_l0.grad is None  # frozen network


def test_functionals_and_fusion_shapes_and_gradients():
    cfg = AudioTowerConfig(kind="fusion", fusion=["functionals", "ge2e"], hidden=24, layers=2, trainable=False)
    fusion = FusionEncoder(cfg).eval()  # no dropout: the parts can be compared
    assert fusion.output_dim == 24 + 256
    batch = _batch([16_000, 19_000, 22_000], seed=3)
    out = fusion.forward_batch(batch, torch.device("cpu"), torch.float32)
    assert out.shape == (3, 280)
    torch.testing.assert_close(out[:, 24:], fusion.parts["ge2e"].forward_batch(batch, torch.device("cpu"),
                                                                              torch.float32))
    func = fusion.parts["functionals"]
    torch.testing.assert_close(out[:, :24], func.forward_batch(batch, torch.device("cpu"), torch.float32))
    out[:, :24].pow(2).sum().backward()
    assert all(p.grad is not None for p in func.parameters())
    with pytest.raises(ValueError, match="paraling"):
        FunctionalsEncoder(cfg).forward_batch({"paraling": torch.zeros(2, 5)}, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("section,key", [
    ({"data": {"input": "lld"}, "model": {"audio": {"kind": "ge2e"}}}, "fastclap.data.input"),
    ({"data": {"input": "lld"}, "model": {"audio": {"kind": "functionals"}}}, "fastclap.data.input"),
    ({"data": {"input": "waveform"}, "model": {"audio": {"kind": "fusion", "fusion": ["lld", "ge2e"]}}},
     "fastclap.data.input"),
    ({"data": {"input": "waveform"}, "model": {"audio": {"kind": "fusion", "fusion": ["ge2e", "mfcc"]}}},
     "fastclap.model.audio.fusion"),
    ({"data": {"input": "waveform"}, "model": {"audio": {"kind": "fusion", "fusion": []}}},
     "fastclap.model.audio.fusion"),
    ({"data": {"input": "waveform"}, "model": {"audio": {"kind": "ge2e", "path": "/nonexistent.pt"}}},
     "fastclap.model.audio.path"),
    ({"data": {"input": "waveform"}, "model": {"audio": {"kind": "ge2e", "pooling": "max"}}},
     "fastclap.model.audio.pooling"),
    ({"data": {"input": "functionals"}, "model": {"audio": {"kind": "functionals", "ge2e_volume": "fixed"}}},
     "fastclap.model.audio.ge2e_volume"),
    ({"data": {"input": "ge2e"}, "model": {"audio": {"kind": "ge2e", "trainable": False, "ge2e_volume": "loud"}}},
     "fastclap.model.audio.ge2e_volume"),
])
def test_config_errors_name_the_key(section, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate(from_dict(FastClapConfig, section))


def test_cached_ge2e_input_equals_the_tower_on_waveforms(monkeypatch):
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.data import ClapDataset, collate_clap
    from fastclap.model import ge2e_cache
    from fastclap.engine.data import ge2e_windows

    prep = prepared_sample()[0]
    cached = ge2e_windows(prep, None, 2.0)
    assert cached[2] == 2 and cached[1].shape == (len(prep) + 1,)  # a 2 s crop spans two 1.6 s windows
    monkeypatch.setattr(ge2e_cache, "GE2EEncoder", None)  # the second call must read the file, not recompute
    again = ge2e_windows(prep, None, 2.0)
    assert np.array_equal(again[0], cached[0])
    monkeypatch.undo()
    ev = ClapDataset(prep, "test", mode="eval", input="ge2e", ge2e=cached)
    wav = ClapDataset(prep, "test", mode="eval", input="waveform")
    tower = GE2ETower(AudioTowerConfig(kind="ge2e", trainable=False))
    items = [0, len(ev) - 1]
    got = collate_clap([ev[k] for k in items])["ge2e"]
    want = tower.forward_batch(collate_clap([wav[k] for k in items]), torch.device("cpu"), torch.float32)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    torch.testing.assert_close(tower.forward_batch({"ge2e": got}, torch.device("cpu"), torch.float32), got)
    tr = ClapDataset(prep, "train", mode="train", input="ge2e", ge2e=cached, crop_seconds=2.0, seed=3)
    i = int(tr.indices[0])
    w = cached[0][cached[1][i]:cached[1][i + 1]]
    runs = [w[s:s + 2].mean(0) for s in range(max(1, len(w) - 1))]
    runs = [r / np.linalg.norm(r) for r in runs]
    crop = tr[0]["ge2e"].numpy()
    assert min(np.abs(crop - r).max() for r in runs) < 1e-6


def test_cached_ge2e_needs_a_frozen_tower():
    with pytest.raises(ValueError, match=r"fastclap\.model\.audio\.trainable"):
        validate(from_dict(FastClapConfig, {"data": {"input": "ge2e"}, "model": {"audio": {"kind": "ge2e"}}}))


def test_evaluation_of_a_frozen_ge2e_model_reads_the_cache_with_equal_vectors():
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.config import ModelConfig, TextTowerConfig
    from fastclap.data import ClapDataset, collate_clap
    from fastclap.evaluation.runner import embed_split
    from fastclap.model import CLAPModel

    prep = prepared_sample()[0]
    cfg = ModelConfig(audio=AudioTowerConfig(kind="fusion", fusion=["functionals", "ge2e"], hidden=8, trainable=False),
                      text=TextTowerConfig(hf_config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                                      "num_attention_heads": 2, "intermediate_size": 64,
                                                      "vocab_size": 30522}, tokenizer="builtin:all-MiniLM-L6-v2"),
                      embed_dim=16)
    model = CLAPModel(cfg).eval()
    got = embed_split(model, prep, "test", batch_size=4, progress=False)["audio_features"]
    wav = ClapDataset(prep, "test", mode="eval", input="waveform")
    with torch.no_grad():
        want = torch.cat([model.encode_audio(collate_clap([wav[k] for k in range(i, min(i + 4, len(wav)))]))
                          for i in range(0, len(wav), 4)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
