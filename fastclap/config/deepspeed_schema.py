"""The DeepSpeed keys of a config checked against DeepSpeed's own config parser: a misspelt key is refused by name
with the closest known key, before DeepSpeed would silently ignore it (``"zero_optimisation"`` trains at ZeRO
stage 0, ``"gradient_clippin"`` turns clipping off).

DeepSpeed reads its top-level keys one by one with ``dict.get`` and ignores any other; its nested sections
(``zero_optimization``, ``bf16``, ``fp16``, the monitors, ...) are pydantic models that refuse unknown fields, but
only once ``deepspeed.initialize`` runs. Here the schema is DeepSpeed's own: the top-level keys are those its
parser (``deepspeed.runtime.config.DeepSpeedConfig``) looks up, recorded while it parses a minimal config and the
config at hand, and the nested sections are validated by parsing the config at hand, each pydantic error turned
into one message naming the full key. Nothing is copied from DeepSpeed, so the check follows the installed version.

DeepSpeed (and with it torch) is imported on the first call only: importing :mod:`fastclap.config` stays light.
"""
from __future__ import annotations

import difflib
import functools
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

# batch keys of the probe: DeepSpeed asserts their consistency with the world size, which the probe is not about
_PROBE_BATCH = {"train_batch_size": 1}
_BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


class _Keys:
    """``dict.keys()`` of a :class:`_RecordingDict`: membership tests are recorded too."""

    def __init__(self, owner: "_RecordingDict") -> None:
        self._owner = owner

    def __contains__(self, key: object) -> bool:
        return key in self._owner

    def __iter__(self):
        return iter(list(dict.keys(self._owner)))

    def __len__(self) -> int:
        return len(self._owner)


class _RecordingDict(dict):
    """A dict that records every key looked up in it (present or not), in order; copies share the record."""

    def __init__(self, data: Dict[str, Any], seen: Optional[List[Any]] = None) -> None:
        super().__init__(data)
        self.seen: List[Any] = [] if seen is None else seen

    def __copy__(self) -> "_RecordingDict":
        return _RecordingDict(self, self.seen)

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.append(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.seen.append(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.append(key)
        return super().__contains__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        self.seen.append(key)
        return super().pop(key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.seen.append(key)
        return super().setdefault(key, default)

    def keys(self):  # type: ignore[override]
        return _Keys(self)


def _parse(ds: Dict[str, Any]) -> Tuple[List[Any], Optional[BaseException]]:
    """Parse ``ds`` with DeepSpeed's config parser; return the keys it looked up, in order, and its exception."""
    import logging

    from deepspeed.runtime.config import DeepSpeedConfig
    from deepspeed.utils import logger

    probe = _RecordingDict(ds)
    level = logger.level
    logger.setLevel(logging.ERROR)  # the parser logs its settings at INFO
    try:
        DeepSpeedConfig(probe)
    except Exception as err:  # noqa: BLE001  (any parse error: DeepSpeed reports it itself at initialize)
        return probe.seen, err
    finally:
        logger.setLevel(level)
    return probe.seen, None


@functools.lru_cache(maxsize=None)
def deepspeed_top_level_keys() -> FrozenSet[str]:
    """The top-level keys DeepSpeed's config parser looks up when it parses a minimal config (those it reads
    whatever the config holds)."""
    seen, _ = _parse(dict(_PROBE_BATCH))
    return frozenset(k for k in seen if isinstance(k, str))


def _suggest(key: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _model_fields(model: Any) -> Set[str]:
    names: Set[str] = set()
    for name, f in getattr(model, "model_fields", {}).items():
        names.add(name)
        if f.alias:
            names.add(f.alias)
    return names


def _find_model(title: str) -> Any:
    """The DeepSpeed pydantic config class named ``title`` (a subclass of ``DeepSpeedConfigModel``), or None."""
    from deepspeed.runtime.config_utils import DeepSpeedConfigModel

    todo = [DeepSpeedConfigModel]
    while todo:
        cls = todo.pop()
        if cls.__name__ == title:
            return cls
        todo.extend(cls.__subclasses__())
    return None


def _nested_model(model: Any, path: Sequence[Any]) -> Any:
    """The pydantic model reached from ``model`` along field names ``path`` (None where it is not a model)."""
    import typing

    for part in path:
        fields = getattr(model, "model_fields", {})
        f = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if f is None:
            return None
        tp = f.annotation
        candidates = [a for a in typing.get_args(tp) if isinstance(a, type)] or [tp]
        model = next((c for c in candidates if hasattr(c, "model_fields")), None)
    return model


def _section_of(seen: Sequence[Any], ds: Dict[str, Any], loc: Sequence[Any]) -> Optional[str]:
    """The top-level section whose value holds the field path ``loc``: the last dict-valued key DeepSpeed looked
    up before failing that contains it."""
    for key in reversed(seen):
        node: Any = ds.get(key) if isinstance(key, str) else None
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and loc and loc[-1] in node:
            return key
    return None


def _pydantic_message(err: BaseException, seen: Sequence[Any], ds: Dict[str, Any]) -> Optional[str]:
    """One ``KEY: message`` line for DeepSpeed's pydantic error ``err`` (None if it is not one)."""
    errors = getattr(err, "errors", None)
    title = getattr(err, "title", None)
    if not callable(errors) or not isinstance(title, str):
        return None
    first = errors()[0]
    loc = tuple(first.get("loc", ()))
    section = _section_of(seen, ds, loc) if loc else None
    if section is None:
        return None
    key = ".".join([section, *map(str, loc)])
    if first.get("type") == "extra_forbidden":
        known = _model_fields(_nested_model(_find_model(title), loc[:-1]))
        return f"{key}: unknown DeepSpeed key{_suggest(str(loc[-1]), known)}"
    return f"{key}: {first.get('msg', 'refused by DeepSpeed')}, got {first.get('input')!r}"


def check_deepspeed_keys(ds: Dict[str, Any]) -> None:
    """Check every key of a config's DeepSpeed part against DeepSpeed's own config schema.

    Args:
        ds: the DeepSpeed part of a config (the file without its ``fastclap`` section).

    Raises:
        ValueError: a top-level key DeepSpeed's parser never reads (``"zero_optimisation: unknown DeepSpeed key
            (did you mean 'zero_optimization'?)"``), or a field a nested DeepSpeed section refuses, unknown or of
            the wrong type (``"zero_optimization.stge: unknown DeepSpeed key (did you mean 'stage'?)"``), or an
            ``optimizer.params`` key that torch's Adam/AdamW does not take when ``torch_adam`` is true.
    """
    probe = {k: v for k, v in ds.items() if k not in _BATCH_KEYS}
    probe.update(_PROBE_BATCH)
    seen, err = _parse(probe)
    known = deepspeed_top_level_keys() | {k for k in seen if isinstance(k, str)} | set(_BATCH_KEYS)
    for key in ds:
        if key not in known:
            raise ValueError(f"{key}: unknown DeepSpeed key{_suggest(key, known)}")
    if err is not None:
        message = _pydantic_message(err, seen, probe)
        if message is not None:
            raise ValueError(message)
    _check_torch_adam_params(ds)


# keys DeepSpeed pops from optimizer.params before it calls torch's Adam / AdamW (runtime/engine.py)
_DEEPSPEED_ADAM_KEYS = frozenset({"torch_adam", "adam_w_mode", "fp32_optimizer_states"})


def _check_torch_adam_params(ds: Dict[str, Any]) -> None:
    """``optimizer.params`` of an Adam/AdamW run on torch's optimizer (``torch_adam: true``): DeepSpeed hands every
    key it does not pop to ``torch.optim.Adam``/``AdamW``, which fails deep inside ``deepspeed.initialize`` on a
    misspelt one (``weight_decy``). The known keys are that constructor's own arguments, read from its signature."""
    opt = ds.get("optimizer")
    if not isinstance(opt, dict) or str(opt.get("type", "")).lower() not in ("adam", "adamw"):
        return
    params = opt.get("params")
    if not isinstance(params, dict) or not params.get("torch_adam", False):
        return
    import inspect

    import torch

    known = (set(inspect.signature(torch.optim.AdamW).parameters) - {"params"}) | _DEEPSPEED_ADAM_KEYS
    for key in params:
        if key not in known:
            raise ValueError(f"optimizer.params.{key}: unknown to torch.optim.AdamW (torch_adam: true)"
                             f"{_suggest(str(key), known)}")
