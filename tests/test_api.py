"""Public API: open_clip calling convention, backend selection and every bad-input error."""
import warnings

import pytest
import torch

from fastclap import SmoothCLAPLoss, smooth_clap_loss
from fastclap.losses.smooth_clap import MissingSoftTargetsWarning
from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import random_inputs


def _inputs(batch=6, dim=8, k=2, seed=0):
    x, y, sources = random_inputs(batch, dim, k, seed=seed)
    return x, y, torch.tensor(14.3), sources


@pytest.mark.parametrize("backend", ["auto", "chunked", "reference"])
def test_module_and_functional_agree_with_reference(backend):
    x, y, s, sources = _inputs()
    want = reference_smooth_clap_loss(x, y, s, sources, (0.5, 0.5), (0.07, 0.07), 0.1)
    module = SmoothCLAPLoss(backend=backend)  # defaults: beta 0.1, w (0.5, 0.5), tau (0.07, 0.07)
    got = module(x, y, s, soft_target_features=sources)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    got_f = smooth_clap_loss(x, y, s, sources, backend=backend)
    torch.testing.assert_close(got_f, want, rtol=1e-5, atol=0)
    assert list(module.parameters()) == []


def test_output_dict_and_hard_loss_paths():
    x, y, s, sources = _inputs()
    hard = reference_smooth_clap_loss(x, y, s)
    with pytest.warns(MissingSoftTargetsWarning):
        out = SmoothCLAPLoss()(x, y, s, output_dict=True)  # no sources -> hard CLAP loss
    assert set(out) == {"contrastive_loss"}
    torch.testing.assert_close(out["contrastive_loss"], hard, rtol=1e-5, atol=0)
    zero_beta = SmoothCLAPLoss(soft_weight=0.0)(x, y, s, soft_target_features=sources)
    torch.testing.assert_close(zero_beta, hard, rtol=1e-5, atol=0)
    assert smooth_clap_loss(x, y, 14.3, soft_weight=0.0).item() == pytest.approx(hard.item(), rel=1e-5)  # float scale


def test_soft_weight_without_sources_warns_once_per_module():
    x, y, s, sources = _inputs()
    hard = reference_smooth_clap_loss(x, y, s)
    loss_fn = SmoothCLAPLoss(soft_weight=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the module's own once-only rule, not the warning filter's
        first = loss_fn(x, y, s)
        second = loss_fn(x, y, s)
        SmoothCLAPLoss(soft_weight=0.0)(x, y, s)          # beta 0: CLAP on purpose, no warning
        loss_fn(x, y, s, soft_target_features=sources)   # sources given: no warning
    assert [w.category for w in caught] == [MissingSoftTargetsWarning]
    assert "soft_weight=0.1" in str(caught[0].message) and "soft_target_features" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line
    torch.testing.assert_close(first, hard, rtol=1e-5, atol=0)
    torch.testing.assert_close(second, hard, rtol=1e-5, atol=0)
    other = SmoothCLAPLoss(soft_weight=0.5)
    with pytest.warns(MissingSoftTargetsWarning, match="soft_weight=0.5"):  # another module warns for itself
        other(x, y, s)
    with pytest.warns(MissingSoftTargetsWarning):  # the functional form warns as well
        smooth_clap_loss(x, y, s, soft_weight=0.3)
    with pytest.raises(ValueError, match="soft_weight"):  # a bad soft_weight is still an error, not a warning
        SmoothCLAPLoss(soft_weight=1.5)(x, y, s)


def test_logit_bias_cancels_and_gets_zero_gradient():
    x, y, s, sources = _inputs()
    bias = torch.tensor(-3.0, requires_grad=True)
    with_bias = smooth_clap_loss(x, y, s, sources, logit_bias=bias)
    without = smooth_clap_loss(x, y, s, sources)
    torch.testing.assert_close(with_bias, without)
    with_bias.backward()
    assert bias.grad is not None and bias.grad.item() == 0.0
    # The bias truly cancels: the reference with b added to every logit has the same value.
    xb = torch.cat([x, torch.ones(len(x), 1)], 1)
    yb = torch.cat([y, torch.full((len(y), 1), -3.0 / 14.3)], 1)
    torch.testing.assert_close(reference_smooth_clap_loss(xb, yb, s, sources, (0.5, 0.5), (0.07, 0.07), 0.1),
                               without, rtol=1e-5, atol=0)


def test_auto_backend_is_chunked_on_cpu():
    from fastclap.losses.smooth_clap import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) == "chunked"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "triton"
    # the fused kernels take at most 3 sources; more go to the blockwise backend
    assert resolve_backend("auto", torch.device("cuda", 0), num_sources=3) == "triton"
    assert resolve_backend("auto", torch.device("cuda", 0), num_sources=4) == "chunked"
    assert resolve_backend("auto", torch.device("cpu"), num_sources=4) == "chunked"


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, y, s, _ = _inputs()
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        smooth_clap_loss(x, y, s, backend="triton")


def _bad_cases():
    x, y, s, (u1, u2) = _inputs()
    ok = dict(audio_features=x, text_features=y, logit_scale=s, soft_target_features=(u1, u2))
    nan_x = x.clone()
    nan_x[2, 3] = float("nan")
    inf_u = u2.clone()
    inf_u[0, 0] = float("inf")
    zero_u = u1.clone()
    zero_u[4] = 0.0
    return [
        ("audio_features", dict(ok, audio_features=x[:, None])),
        ("same shape", dict(ok, text_features=y[:5])),
        ("share a dtype", dict(ok, text_features=y.bfloat16())),
        ("float32, bfloat16", dict(ok, audio_features=x.long(), text_features=y.long())),
        ("B = 0", dict(ok, audio_features=x[:0], text_features=y[:0])),
        ("audio_features contains NaN", dict(ok, audio_features=nan_x)),
        ("text_features contains NaN", dict(ok, text_features=y * float("inf"))),
        ("logit_scale contains NaN", dict(ok, logit_scale=torch.tensor(float("inf")))),
        ("logit_scale must be a one-element", dict(ok, logit_scale=torch.ones(2))),
        ("logit_bias", dict(ok, logit_bias=torch.tensor(float("nan")))),
        ("soft_weight", dict(ok, soft_weight=1.5)),
        ("soft_weight", dict(ok, soft_weight=-0.1)),
        ("source_weights must sum to 1", dict(ok, source_weights=(0.5, 0.6))),
        ("source_weights\\[1\\]", dict(ok, source_weights=(1.5, -0.5))),
        ("source_temperatures\\[0\\]", dict(ok, source_temperatures=(0.0, 0.07))),
        ("one entry per soft-target source", dict(ok, source_temperatures=(0.07,))),
        ("soft_target_features has 1 sources", dict(ok, soft_target_features=(u1,))),
        ("soft_target_features\\[1\\] has 5 rows", dict(ok, soft_target_features=(u1, u2[:5]))),
        ("soft_target_features\\[1\\] contains NaN", dict(ok, soft_target_features=(u1, inf_u))),
        ("soft_target_features\\[0\\] row 4 has zero norm", dict(ok, soft_target_features=(zero_u, u2))),
        ("not a single tensor", dict(ok, soft_target_features=u1)),
        ("backend", dict(ok, backend="cuda-magic")),
    ]


@pytest.mark.parametrize("message,kwargs", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_raises_value_error_naming_the_argument(message, kwargs):
    with pytest.raises(ValueError, match=message):
        smooth_clap_loss(**kwargs)


def test_module_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        SmoothCLAPLoss(backend="fast")
