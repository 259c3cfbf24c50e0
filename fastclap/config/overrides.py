"""Command-line overrides of a config file: ``train.py --set KEY=VALUE`` (see :func:`apply_overrides`)."""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, Sequence


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """A copy of the full config dict with command-line overrides ``KEY=VALUE`` applied, in order.

    KEY is a dotted path from the top of the file (``zero_optimization.stage``, ``fastclap.schedule.steps``;
    a list element by its index, ``fastclap.data.corpora.0.prepared_dir``); missing objects on the way are
    created. VALUE is parsed as JSON (``3``, ``true``, ``null``, ``[0.07, 0.05]``, ``{"enabled": true}``) and
    taken as a plain string when it is not JSON (``runs/x``). Overrides are applied before validation, so a
    misspelt fastclap key fails there with its full name (``fastclap.loss.sof_weight: unknown key``).

    Raises:
        ValueError: an override without ``=`` or with an empty key part, or a path that runs through a value
            that is not an object (or a list index out of range); the message names the override.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. zero_optimization.stage=3")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ValueError(f"--set {item!r}: {where} is a list of {len(node)}; {part!r} is not an index")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ValueError(f"--set {item!r}: {where} is {node!r}, not an object")
    return raw
