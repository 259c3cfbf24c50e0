"""Shared helpers for the loss tests: random CLAP inputs and an independent loop-based formula."""
from __future__ import annotations

import math

import torch


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
