"""Package attributes loaded on first access (PEP 562), so that importing a light module of a package (a
command-line parser, a constants module) does not import the package's heavy modules (torch). Standard
library only; any layer may import it."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping, Tuple


def lazy_attributes(package: str, names: Mapping[str, str], namespace: Dict[str, Any]
                    ) -> Tuple[Callable[[str], Any], Callable[[], list]]:
    """(``__getattr__``, ``__dir__``) for ``package``: ``names`` maps each public name to the submodule
    (relative to ``package``) that defines it; the first access imports it and caches the value in
    ``namespace`` (the package's ``globals()``). An unknown name raises AttributeError as usual."""
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
