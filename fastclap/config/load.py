"""Reading a config file: JSON, ``--set`` overrides, strict conversion, checks; the DeepSpeed part split off."""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .checks import validate
from .deepspeed_keys import check_finite, check_grad_cache
from .overrides import apply_overrides
from .schema import CHANGES_KEY, FastClapConfig
from .typed import from_json_data


def from_dict(cls: Any, data: Dict[str, Any], prefix: str = "fastclap") -> Any:
    """Build dataclass ``cls`` from ``data`` strictly (pydantic, :mod:`fastclap.config.typed`); an unknown key, a wrong
    type or a non-finite number raises ``ValueError`` naming the key."""
    return from_json_data(cls, data, prefix)


def to_dict(cfg: Any) -> Dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _unique_keys(path: str, pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """A JSON object's dict; a key given twice (JSON keeps the last silently) raises ``ValueError``."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{path}: key {key!r} appears twice in one object")
        out[key] = value
    return out


def load_config(path: str, overrides: Sequence[str] = ()) -> Tuple[Dict[str, Any], FastClapConfig]:
    """Read a config file, apply ``overrides`` (:func:`fastclap.config.overrides.apply_overrides`); return
    (DeepSpeed dict without the fastclap section, validated FastClapConfig).

    Raises:
        ValueError: a file that is not UTF-8 JSON (the path named), a bad override, a missing ``fastclap`` section, an unknown key or a wrong
            type (named).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {err.start}: {data[err.start:err.start + 1]!r}); "
                         "a config is a JSON file") from None
    try:
        raw = json.loads(text, object_pairs_hook=functools.partial(_unique_keys, path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object at the top, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    if not isinstance(raw.get("fastclap"), dict):
        raise ValueError(f"{path}: missing the 'fastclap' section")
    return split_config(raw)


def split_config(raw: Dict[str, Any]) -> Tuple[Dict[str, Any], FastClapConfig]:
    """Split a full config dict into (DeepSpeed dict, validated FastClapConfig)."""
    raw = copy.deepcopy(raw)
    raw.pop(CHANGES_KEY, None)
    section = raw.pop("fastclap", {})
    check_finite(raw, "")  # the DeepSpeed keys; the fastclap section is checked field by field
    cfg = validate(from_dict(FastClapConfig, section, "fastclap"))
    check_grad_cache(cfg.grad_cache, raw)
    return raw, cfg


def resolve_path(p: Optional[str]) -> Optional[str]:
    """Absolute path of a config path (relative paths are taken from the working directory)."""
    return None if p is None else os.path.abspath(os.path.expanduser(p))
