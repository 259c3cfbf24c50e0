"""Shared helpers for the loss tests: random CLAP inputs and an independent loop-based formula."""
from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def random_inputs(batch, dim, num_sources, *, seed, dtype=torch.float32, source_dims=(5, 88, 17)):
    """L2-normalised audio / text features and K raw soft-target sources (not normalised)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(dtype)
    y = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(dtype)
    sources = tuple(torch.randn(batch, source_dims[k], generator=g) * (1 + k) for k in range(num_sources))
    return x, y, sources


def naive_loss(x, y, scale, sources, weights, temps, beta):
    """Scalar-loop evaluation of the SmoothCLAP formula in float64, written independently of the
    vectorised reference (no softmax / cross_entropy helpers)."""
    x = x.double().tolist()
    y = y.double().tolist()
    s = float(scale)
    n = len(x)
    dot = lambda a, b: sum(p * q for p, q in zip(a, b))
    logits = [[s * dot(x[i], y[j]) for j in range(n)] for i in range(n)]
    target = [[(1.0 - beta) * (i == j) for j in range(n)] for i in range(n)]
    if beta > 0 and sources:
        for u, w, tau in zip(sources, weights, temps):
            u = u.double().tolist()
            norms = [math.sqrt(dot(r, r)) for r in u]
            for i in range(n):
                cos = [dot(u[i], u[j]) / (norms[i] * norms[j]) / tau for j in range(n)]
                m = max(cos)
                z = sum(math.exp(c - m) for c in cos)
                for j in range(n):
                    target[i][j] += beta * w * math.exp(cos[j] - m) / z

    def lse(vals):
        m = max(vals)
        return m + math.log(sum(math.exp(v - m) for v in vals))

    a2t = sum(lse(logits[i]) - sum(target[i][j] * logits[i][j] for j in range(n)) for i in range(n)) / n
    t2a = sum(
        lse([logits[i][j] for i in range(n)]) - sum(target[j][i] * logits[i][j] for i in range(n))
        for j in range(n)
    ) / n
    return 0.5 * (a2t + t2a)


FP32_EPS = torch.finfo(torch.float32).eps


def grad_atol(reference_grad, scale_times_feature):
    """Absolute tolerance for an fp32 gradient: 1e-5 of its largest entry, plus four fp32 roundings of the
    largest single term s * |feature| (the exact gradient is 0 at B = 1, where only rounding is left)."""
    return 1e-5 * reference_grad.abs().max().item() + 4 * FP32_EPS * abs(scale_times_feature)


def loss_and_grads(fn, x, y, scale, sources, weights, temps, beta, grad_output=1.0, **kw):
    """Run a backend-contract loss on fresh leaf copies of x, y and a scalar logit_scale, backpropagate
    ``grad_output`` and return (loss, dX, dY, d logit_scale)."""
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    s = torch.tensor(scale, device=x.device, requires_grad=True)
    loss = fn(x, y, s, sources, weights, temps, beta, **kw)
    (loss * grad_output).backward()
    return loss.detach(), x.grad, y.grad, s.grad


def assert_fp32_close(got, want, scale):
    """fp32 rule of the fused-loss tests: loss rtol 1e-5 / atol 1e-6; dX, dY rtol 1e-5 with atol 1e-5 of the
    largest reference entry plus 1e-6 s / B (the exact gradient is 0 at B = 1, where only rounding is left);
    d logit_scale rtol 1e-5 / atol 1e-6. ``got`` / ``want``: (loss, dX, dY, ds) as from loss_and_grads."""
    (l1, gx1, gy1, gs1), (l2, gx2, gy2, gs2) = got, want
    floor = 1e-6 * scale / gx2.shape[0]
    assert l1.dtype == torch.float32 and l1.dim() == 0
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    for a, b in ((gx1, gx2), (gy1, gy2)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item() + floor)
    torch.testing.assert_close(gs1, gs2, rtol=1e-5, atol=1e-6)


def assert_16bit_close(got, ref32, ref16, dtype):
    """16-bit rule: per quantity, max |got - ref32| <= 2 max |ref16 - ref32| + one 16-bit ulp of the largest
    reference entry (2^-8 for bf16, 2^-11 for fp16): dX / dY are returned in that dtype, so storage rounding
    alone reaches the floor. ref32: fp32 reference on the rounded inputs; ref16: reference computed in dtype."""
    ulp = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11
    for name, g, r32, r16 in zip(("loss", "dX", "dY", "dscale"), got, ref32, ref16):
        err = (g.float() - r32.float()).abs().max().item()
        ref_err = (r16.float() - r32.float()).abs().max().item()
        floor = ulp * r32.float().abs().max().item()
        assert err <= 2 * ref_err + floor, f"{name}: error {err:.3g}, 16-bit reference error {ref_err:.3g}"


def run_under_autocast(fn, tensors, device_type, amp_dtype=None):
    """(outputs, grads) of ``fn`` on fresh leaves of ``tensors`` (floating ones require grad), under
    ``torch.autocast(device_type, amp_dtype)`` if ``amp_dtype`` is given; backward after the region, as training
    loops call it. Tuple outputs are backpropagated summed with weights 1, 2, ..."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]
    with torch.autocast(device_type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        out = fn(*leaves)
    outs = out if isinstance(out, tuple) else (out,)
    sum((i + 1) * o for i, o in enumerate(outs)).backward()
    return [o.detach() for o in outs], [t.grad for t in leaves]


def assert_same_inside_and_outside_autocast(fn, tensors, device_type, amp_dtype):
    """The autocast run of ``fn`` equals the plain run (0-d fp32 values rtol 1e-6; gradients rtol 1e-6, atol 1e-6
    of the largest entry) and returns each gradient in its input's dtype. Returns the autocast run's outputs."""
    (out_amp, g_amp), (out, g) = (run_under_autocast(fn, tensors, device_type, amp_dtype),
                                  run_under_autocast(fn, tensors, device_type))
    for a, b in zip(out_amp, out):
        assert a.dtype == torch.float32 and a.dim() == 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for t, a, b in zip(tensors, g_amp, g):
        if b is None:   # no gradient (e.g. a detached distillation teacher)
            assert a is None
            continue
        assert a.dtype == t.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()) + 1e-9)
    return out_amp


class GemmCounter(TorchDispatchMode):
    """Multiply-adds of the torch GEMMs (aten.mm / addmm / bmm) run under it."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(("aten.mm", "aten.addmm", "aten.bmm")):
            a, b = (args[0], args[1]) if "addmm" not in name else (args[1], args[2])
            self.macs += a.numel() * b.shape[-1]
        return func(*args, **(kwargs or {}))
