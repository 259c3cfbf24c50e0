"""CLAP model: towers, masked pooling, heads, frozen-text cache, param groups, exported weights."""
import math

import torch

from fastclap.config import AudioTowerConfig, ModelConfig, TextTowerConfig, from_dict
from fastclap.model import CLAPModel, LLDEncoder, masked_mean
from test_train_helpers import TINY_TEXT

torch.manual_seed(0)


def tiny_model(**audio):
    cfg = ModelConfig(audio=AudioTowerConfig(hidden=24, **audio),
                      text=from_dict(TextTowerConfig, dict(TINY_TEXT, trainable=False), "text"), embed_dim=8)
    return CLAPModel(cfg)


def test_masked_mean_matches_loop():
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    lengths = [7, 3, 1]
    mask = torch.zeros(3, 7)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    got = masked_mean(x, mask)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(got[i], x[i, :n].mean(0))


def test_lld_encoder_ignores_padding():
    enc = LLDEncoder(AudioTowerConfig(hidden=16, layers=2, dropout=0.0)).eval()
    lld = torch.randn(2, 40, 25)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 23:] = 0
    out = enc(lld, mask)
    garbage = lld.clone()
    garbage[1, 23:] = 1e3 * torch.randn(17, 25)
    torch.testing.assert_close(enc(garbage, mask), out)
    torch.testing.assert_close(enc(lld[1:, :23], None)[0], out[1], rtol=1e-5, atol=1e-5)


def test_embeddings_normalised_and_logit_scale():
    model = tiny_model().eval()
    batch = {"lld": torch.randn(5, 30, 25), "lld_mask": torch.ones(5, 30), "paraling": torch.randn(5, 88),
             "captions": [f"speaker is happy {i}" for i in range(5)]}
    out = model(batch)
    assert out["audio_features"].shape == out["text_features"].shape == (5, 8)
    torch.testing.assert_close(out["audio_features"].norm(dim=1), torch.ones(5))
    torch.testing.assert_close(out["text_features"].norm(dim=1), torch.ones(5))
    assert out["logit_scale"].dim() == 0 and math.isclose(float(out["logit_scale"].detach()), 1 / 0.07, rel_tol=1e-6)
    torch.testing.assert_close(model.encode_text(batch["captions"]), out["text_features"])


def test_frozen_text_tower_caches_per_caption():
    model = tiny_model()
    calls = []
    enc = model.text_tower.encoder
    handle = enc.register_forward_hook(lambda m, i, o: calls.append(i))
    caps = ["a", "b", "a", "c"]
    first = model.text_embeddings(caps)
    second = model.text_embeddings(["c", "a"])
    handle.remove()
    assert len(calls) == 1  # one batched call for the three distinct captions, none afterwards
    torch.testing.assert_close(second, first[[3, 0]])
    torch.testing.assert_close(first[0], model.text_tower._encode(["a"])[0].detach())
    assert not any(p.requires_grad for p in model.text_tower.parameters())


def test_param_groups_lr_and_decay():
    model = CLAPModel(ModelConfig(audio=AudioTowerConfig(hidden=8, lr=1e-4),
                                  text=from_dict(TextTowerConfig, dict(TINY_TEXT), "text"),
                                  embed_dim=4, projection_lr=2e-3))
    groups = {g["name"]: g for g in model.param_groups(1e-3, 0.05)}
    assert groups["audio"]["lr"] == 1e-4 and groups["audio"]["weight_decay"] == 0.05
    assert groups["text"]["lr"] == 1e-3
    assert groups["heads"]["lr"] == groups["logit_scale"]["lr"] == 2e-3
    assert groups["logit_scale"]["weight_decay"] == 0.0 and groups["audio_no_decay"]["weight_decay"] == 0.0
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)


def test_hf_audio_tower_tiny_wav2vec2():
    hf = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [5, 4], "conv_kernel": [10, 8],
          "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer",
          "do_stable_layer_norm": True}
    model = tiny_model(kind="hf", hf_config=hf).eval()
    wav = torch.randn(3, 1600)
    mask = torch.ones(3, 1600, dtype=torch.long)
    mask[2, 800:] = 0
    emb = model.encode_audio({"waveforms": wav, "attention_mask": mask})
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    # a clip padded with zeros beyond its mask pools the same frames as the clip alone
    alone = model.encode_audio({"waveforms": wav[2:, :800], "attention_mask": mask[2:, :800]})
    torch.testing.assert_close(emb[2:], alone, rtol=1e-4, atol=1e-4)
