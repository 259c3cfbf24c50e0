"""Cross-modal Rank-N-Contrast: chunked backend vs the loop-form reference, both vs independent formulas.

Tolerances (fp32, CPU; no TF32 involved):
| quantity            | check                                                                          |
| loss                | 1e-5 relative (of max(1, |loss|))                                              |
| dX, dY, d logit_scale | rtol 1e-5, atol = helpers.grad_atol (1e-5 of the largest entry + 4 fp32     |
|                     | roundings of s * max|feature|, for the exact zeros at B = 1)                   |
| bf16 features       | |chunked - fp32 reference| <= 2 |loop reference in bf16 inputs - fp32| + 1e-4  |
"""
import itertools
import math

import pytest
import torch

from fastclap import RankNContrastLoss, rank_n_contrast_loss
from fastclap.losses.rnc_chunked import chunked_rnc_rows_sum
from fastclap.losses.rnc_reference import reference_rnc_loss
from helpers import grad_atol, random_inputs
from test_chunked_loss import _LargestAllocation
from test_chunked_loss import _assert_close as assert_close

BATCHES = (1, 2, 7, 31, 97, 131)  # 31, 97, 131: primes (131 > the 64-row block below)
LABELS = ("ties", "continuous", "ties3")
SCALES = (1.0, 14.3, 100.0)
DISTANCES = ("l1", "l2")


def make_labels(kind, batch, seed):
    """Ordinal labels: 'ties' = 2-D points on a 3 x 3 grid (categorical labels: massive ties), 'ties3' = 3-D
    points with 2 levels per axis, 'continuous' = Gaussian 2-D (ties have probability 0)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        return torch.randint(0, 3, (batch, 2), generator=g).float() * 0.5 - 0.5
    if kind == "ties3":
        return torch.randint(0, 2, (batch, 3), generator=g).float()
    return torch.randn(batch, 2, generator=g)


def run(fn, x, y, scale, labels, grad_output=1.0, **kw):
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    s = torch.tensor(scale, requires_grad=True)
    loss = fn(x, y, s, labels, **kw)
    (loss * grad_output).backward()
    return loss.detach(), x.grad, y.grad, s.grad


def naive_rnc(x, y, scale, labels, distance="l1"):
    """Scalar float64 loops of spec Sec. 4, written independently of both backends."""
    x, y, z = x.double().tolist(), y.double().tolist(), labels.double().tolist()
    n, s = len(x), float(scale)
    S = [[s * sum(p * q for p, q in zip(x[i], y[j])) for j in range(n)] for i in range(n)]

    def dist(a, b):
        diffs = [abs(p - q) for p, q in zip(a, b)]
        return sum(diffs) if distance == "l1" else math.sqrt(sum(t * t for t in diffs))

    def direction(M):
        total = 0.0
        for i in range(n):
            for j in range(n):
                dij = dist(z[i], z[j])
                den = [M[i][k] for k in range(n) if dist(z[i], z[k]) >= dij]
                m = max(den)
                total += -M[i][j] + m + math.log(sum(math.exp(v - m) for v in den))
        return total / (n * n)

    St = [[S[j][i] for j in range(n)] for i in range(n)]
    return 0.5 * (direction(S) + direction(St))


@pytest.mark.parametrize("kind,distance", list(itertools.product(LABELS, DISTANCES)))
def test_reference_equals_independent_float64_loops(kind, distance):
    x, y, _ = random_inputs(9, 5, 0, seed=3)
    labels = make_labels(kind, 9, seed=4)
    got = rank_n_contrast_loss(x, y, torch.tensor(7.0), labels, distance=distance, backend="reference")
    want = naive_rnc(x, y, 7.0, labels, distance)
    assert abs(got.item() - want) <= 1e-5 * max(1.0, abs(want))
    got = rank_n_contrast_loss(x, y, torch.tensor(7.0), labels, distance=distance, backend="chunked", block_rows=2)
    assert abs(got.item() - want) <= 1e-5 * max(1.0, abs(want))


def _cases():
    cases = []
    for n, (b, kind) in enumerate(itertools.product(BATCHES, LABELS)):
        cases.append((b, kind, SCALES[n % 3], DISTANCES[(n // 3) % 2], (3, 16, 100)[(n + 1) % 3]))
    return cases


@pytest.mark.parametrize("batch,kind,scale,distance,dim", _cases())
def test_chunked_matches_reference_fp32(batch, kind, scale, distance, dim):
    x, y, _ = random_inputs(batch, dim, 0, seed=100 * batch + dim)
    labels = make_labels(kind, batch, seed=batch)
    want = run(rank_n_contrast_loss, x, y, scale, labels, backend="reference", distance=distance)
    block = 64 if batch > 64 else 3
    got = run(rank_n_contrast_loss, x, y, scale, labels, backend="chunked", distance=distance, block_rows=block)
    assert_close(got, want, scale * max(x.abs().max().item(), y.abs().max().item()))


def test_logit_rows_wider_than_the_fast_path_range():
    """Rows of logits spanning more than the fast log-cumsum-exp's safe range (a few audio rows of norm 5 at scale
    100: |S| up to 500) are computed exactly, whether or not the other blocks are."""
    x, y, _ = random_inputs(19, 6, 0, seed=21)
    x = x.clone()
    x[4:8] *= 5.0  # a2t rows 4-6 (block 1 of 4 rows) span more than 700, the other blocks' rows less
    labels = make_labels("ties", 19, seed=21)
    want = naive_rnc(x, y, 100.0, labels)
    got = run(rank_n_contrast_loss, x, y, 100.0, labels, backend="chunked", block_rows=4)
    assert abs(got[0].item() - want) <= 1e-5 * abs(want)
    assert_close(got, run(rank_n_contrast_loss, x, y, 100.0, labels, backend="reference"), 500.0)


def test_no_host_sync_per_block(monkeypatch):
    """The block loop keeps its range check on the device: the host reads a tensor at most once per pass
    (forward, backward), however many blocks there are."""
    x, y, _ = random_inputs(64, 8, 0, seed=2)
    x.requires_grad_(True)
    labels = make_labels("continuous", 64, seed=2)
    reads = []
    for name in ("__bool__", "item", "__float__", "__int__", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _real=real, _name=name: reads.append(_name) or _real(self, *a))
    loss = chunked_rnc_rows_sum(x, y, x, y, torch.tensor(14.3), labels, labels, block_rows=4)  # 16 blocks
    forward_reads = len(reads)
    loss.backward()
    monkeypatch.undo()
    assert forward_reads <= 1 and len(reads) - forward_reads <= 1, reads


def test_all_labels_equal_is_clip_like_closed_form():
    """One tie group: every candidate is in every denominator, so l_a2t = mean_i lse_j S_ij - mean_ij S_ij."""
    x, y, _ = random_inputs(23, 8, 0, seed=9)
    s = 14.3
    S = s * x.double() @ y.double().T
    want = 0.5 * (torch.logsumexp(S, 1).mean() + torch.logsumexp(S, 0).mean()) - S.mean()
    got = rank_n_contrast_loss(x, y, torch.tensor(s), torch.ones(23, 2), backend="chunked", block_rows=4)
    assert abs(got.item() - want.item()) <= 1e-5 * abs(want.item())


def test_ties_are_inclusive():
    """With two tie groups, a strict '>' (ties excluded) gives a different value: the test can see the rule."""
    x, y, _ = random_inputs(6, 4, 0, seed=2)
    labels = torch.tensor([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0]])
    got = rank_n_contrast_loss(x, y, torch.tensor(10.0), labels)
    want = naive_rnc(x, y, 10.0, labels)
    assert abs(got.item() - want) <= 1e-5 * abs(want)
    S = 10.0 * x.double() @ y.double().T
    d = (labels - labels.T).abs().double()
    strict = 0.0
    for M in (S, S.T):
        for i in range(6):
            for j in range(6):
                mask = (d[i] > d[i, j]).clone()
                mask[j] = True
                strict += (torch.logsumexp(M[i][mask], 0) - M[i, j]).item() / 72
    assert abs(strict - want) > 1e-3


def test_grad_output_not_one_and_bias():
    x, y, _ = random_inputs(37, 16, 0, seed=7)
    labels = make_labels("ties", 37, seed=1)
    want = run(rank_n_contrast_loss, x, y, 14.3, labels, grad_output=-2.75, backend="reference")
    got = run(rank_n_contrast_loss, x, y, 14.3, labels, grad_output=-2.75, backend="chunked", block_rows=5)
    assert_close(got, want, 14.3 * 2.75)
    bias = torch.tensor(-3.0, requires_grad=True)
    biased = rank_n_contrast_loss(x, y, torch.tensor(14.3), labels, bias)
    biased.backward()
    assert abs(biased.item() - want[0].item()) <= 1e-5 * abs(want[0].item()) and bias.grad.item() == 0.0


def test_module_and_output_dict():
    x, y, _ = random_inputs(12, 8, 0, seed=5)
    labels = make_labels("continuous", 12, seed=5)
    module = RankNContrastLoss(distance="l2")
    out = module(x, y, torch.tensor(10.0), labels, output_dict=True)
    assert set(out) == {"rnc_loss"}
    assert out["rnc_loss"].item() == rank_n_contrast_loss(x, y, 10.0, labels, distance="l2").item()
    assert "distance='l2'" in repr(module)


def test_bf16_features():
    x, y, _ = random_inputs(96, 64, 0, seed=11, dtype=torch.bfloat16)
    labels = make_labels("ties", 96, seed=11)
    exact = reference_rnc_loss(x.float(), y.float(), torch.tensor(14.3), labels)
    ref_bf16 = reference_rnc_loss(x.float().bfloat16().float(), y.float().bfloat16().float(), torch.tensor(14.3),
                                  labels)
    got = rank_n_contrast_loss(x, y, torch.tensor(14.3), labels, block_rows=32)
    assert got.dtype == torch.float32
    assert abs(got - exact) <= 2 * abs(ref_bf16 - exact) + 1e-4


@pytest.mark.parametrize("labels,match", [
    (torch.tensor([[0.0, float("nan")]] * 5), "labels contains NaN"),
    (torch.zeros(4, 2), "labels has 4 rows, expected B = 5"),
    (torch.zeros(5, 2, dtype=torch.long), "labels must be a floating tensor"),
    (torch.zeros(5), r"labels must have shape \(B, m\)"),
    (torch.zeros(5, 0), r"labels must have shape \(B, m\)"),
    ([[0.0, 1.0]] * 5, "labels must be a torch.Tensor"),
])
def test_bad_labels(labels, match):
    x, y, _ = random_inputs(5, 4, 0, seed=1)
    with pytest.raises(ValueError, match=match):
        rank_n_contrast_loss(x, y, torch.tensor(10.0), labels)


@pytest.mark.parametrize("kw,match", [
    ({"distance": "cosine"}, "distance must be one of"), ({"backend": "triton"}, "backend must be one of"),
])
def test_bad_options(kw, match):
    x, y, _ = random_inputs(5, 4, 0, seed=1)
    with pytest.raises(ValueError, match=match):
        rank_n_contrast_loss(x, y, torch.tensor(10.0), torch.zeros(5, 2), **kw)
    with pytest.raises(ValueError, match=match):
        RankNContrastLoss(**kw)


def test_bad_features_named():
    x, y, _ = random_inputs(5, 4, 0, seed=1)
    with pytest.raises(ValueError, match="text_features"):
        rank_n_contrast_loss(x, y[:4], torch.tensor(10.0), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="audio_features contains NaN"):
        rank_n_contrast_loss(x * float("nan"), y, torch.tensor(10.0), torch.zeros(5, 2))


def test_chunked_memory_is_linear_in_batch():
    batch, dim, block = 1024, 16, 32
    x, y, _ = random_inputs(batch, dim, 0, seed=5)
    labels = make_labels("ties", batch, seed=5)
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(14.3, requires_grad=True)
    with _LargestAllocation() as mode:
        chunked_rnc_rows_sum(x, y, x, y, s, labels, labels, "l1", block_rows=block).backward()
    assert x.grad is not None and s.grad is not None
    assert mode.largest <= block * batch < batch * batch // 16
    with _LargestAllocation() as mode:  # the probe sees the reference's B x B tensors
        reference_rnc_loss(x[:128], y[:128], s, labels[:128])
    assert mode.largest >= 128 * 128
