"""The loss refuses a logit_scale that is not a positive finite one-element tensor (negative, zero, empty),
like a NaN one, on every backend; a positive scalar or one-element tensor of any shape is accepted."""
import pytest
import torch

from fastclap import smooth_clap_loss
from test_api import _inputs


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize("scale,message", [
    (torch.tensor(-14.3), "logit_scale must be > 0"),
    (torch.tensor([-1.0]), "logit_scale must be > 0"),
    (torch.tensor(0.0), "logit_scale must be > 0"),
    (torch.tensor(-0.0), "logit_scale must be > 0"),
    (torch.empty(0), "logit_scale must be a one-element tensor"),
    (torch.tensor(float("nan")), "logit_scale contains NaN"),
    (-5.0, "logit_scale must be > 0"),
])
def test_bad_logit_scale_is_refused(backend, scale, message):
    x, y, _, sources = _inputs()
    with pytest.raises(ValueError, match=message):
        smooth_clap_loss(x, y, scale, soft_target_features=sources, backend=backend)


@pytest.mark.parametrize("scale", [torch.tensor(14.3), torch.tensor([14.3]), torch.tensor([[14.3]]), 14.3])
def test_positive_logit_scale_of_any_one_element_shape_is_accepted(scale):
    x, y, _, sources = _inputs()
    ref = smooth_clap_loss(x, y, torch.tensor(14.3), soft_target_features=sources, backend="reference")
    got = smooth_clap_loss(x, y, scale, soft_target_features=sources, backend="reference")
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
