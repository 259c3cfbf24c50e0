"""The gradient-caching benchmark's arithmetic (no timing, no memory asserted): frame counts against the
transformers implementation, and the estimate's slope on rows with a known linear memory law."""
import pytest
import torch

from benchmarks.grad_cache import activation_units, conv_frames, estimate


@pytest.mark.parametrize("samples", [400, 16000, 64000, 12345])
def test_conv_frames_match_wav2vec2(samples):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                         intermediate_size=8, conv_dim=(4,) * 7, num_conv_pos_embeddings=4,
                                         num_conv_pos_embedding_groups=1))
    want = int(model._get_feat_extract_output_lengths(torch.tensor(samples)))
    assert conv_frames(samples)[-1] == want


def test_estimate_recovers_the_slope_and_labels_itself():
    units = activation_units(128, 128, 4, 4, 256, 16000, 64, 2, 2, 128, 32)
    rows = [{"status": "ok", "sub_batch": s, "peak_bytes": 5e6 + 3e6 * s, "units_per_pair": units}
            for s in (4, 8, 16, 32)] + [{"status": "ok", "sub_batch": 0, "peak_bytes": 1e9, "units_per_pair": units}]
    est = estimate(rows)
    assert est["measured_activation_bytes_per_pair"] == pytest.approx(3e6)
    assert "ESTIMATE" in est["label"] and est["pairs_per_gpu"] == 8192
    big = activation_units(512, 1024, 24, 16, 4096, 64000, 768, 12, 12, 3072, 64)
    assert est["large_activation_MiB_per_pair_bf16"] == pytest.approx(3e6 * big / units / 2 / 2 ** 20)
