"""The losses under ``torch.autocast``: their math runs outside it, in the precision each backend documents.

Autocast lowers the matmuls it meets to fp16 / bf16, including those inside a loss and inside a custom
autograd Function's forward; a loss that promises fp32 similarities would then silently compute them in 16 bits
(about 1e-3 relative in bf16), and ops that mix an autocast result with an fp32 buffer fail outright
(``torch.dot`` of Float and Half). So every public loss (``smooth_clap_loss``, ``siglip_loss``,
``rank_n_contrast_loss``, the reference loss, the ``fastclap.compat`` classes) is wrapped by
:func:`outside_autocast`, and the blockwise autograd Functions' backward by :func:`backward_outside_autocast`
(PyTorch runs a backward under the autocast state of the ``backward()`` call, not of the forward):

* inside an enabled autocast region of the features' device type, autocast is switched off for the loss call;
* feature matrices that autocast left in different float dtypes (an fp16 tower beside an fp32 one) are cast to
  the wider dtype (``torch.promote_types``) before the dtype check; outside autocast a mismatch stays an error;
* the loss is the same 0-d fp32 value as outside autocast, and autograd returns each input's gradient in that
  input's own dtype.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Optional, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def autocast_enabled(device_type: str) -> bool:
    """True inside an enabled ``torch.autocast`` region for ``device_type`` ("cpu", "cuda", ...)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError, ValueError):  # a device type autocast does not know
        return False


def _first_device_type(values: Iterable[Any]) -> Optional[str]:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device.type
    return None


def outside_autocast(*feature_args: str) -> Callable[[F], F]:
    """Decorator: run the loss ``fn`` with autocast off for its tensors' device type (module doc).

    ``feature_args`` name the parameters of ``fn`` that hold feature matrices; inside autocast those of
    different float dtypes are cast to the widest among them. Outside autocast ``fn`` is called unchanged.
    """
    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            device_type = _first_device_type((*args, *kwargs.values()))
            if device_type is None or not autocast_enabled(device_type):
                return fn(*args, **kwargs)
            if feature_args:
                bound = signature.bind(*args, **kwargs)
                named = {n: t for n in feature_args
                         if isinstance(t := bound.arguments.get(n), torch.Tensor) and t.dtype in _FLOATS}
                if len({t.dtype for t in named.values()}) > 1:
                    wide = functools.reduce(torch.promote_types, (t.dtype for t in named.values()))
                    for n, t in named.items():
                        bound.arguments[n] = t.to(wide)
                    args, kwargs = bound.args, bound.kwargs
            with torch.autocast(device_type, enabled=False):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def backward_outside_autocast(backward: F) -> F:
    """Decorator for a custom autograd Function's ``backward(ctx, *grads)``: autocast off for the gradients'
    device type, so a ``backward()`` called inside an autocast region recomputes in the forward's precision."""
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        device_type = _first_device_type(grads)
        if device_type is None or not autocast_enabled(device_type):
            return backward(ctx, *grads)
        with torch.autocast(device_type, enabled=False):
            return backward(ctx, *grads)

    return wrapper  # type: ignore[return-value]
