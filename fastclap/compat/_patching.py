"""Put fastclap's drop-in classes where a peer's training code looks its loss classes up, and take them back.

A training script reaches a loss class through module attributes bound at import time (``open_clip.factory``
ran ``from .loss import ClipLoss, ...``; LAION-CLAP's ``training/train.py`` ran ``from clap_module import
ClipLoss``), so replacing the class in its defining module alone changes nothing. A :class:`Patcher` rebinds
every attribute of the peer's imported modules (by module-name prefix) that holds one of the original
classes, records each site, and restores exactly those sites on :meth:`Patcher.unpatch`.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Dict, Iterator, List, Sequence

Replacements = Dict[type, type]


class Patcher:
    """One peer's patch state.

    Args:
        prefixes: the peer's top-level package names (each covers its submodules).
        load: imports the peer's loss code and returns {original class: fastclap class}; raises ImportError
            (with the reason) when the peer cannot be imported.
    """

    def __init__(self, prefixes: Sequence[str], load: Callable[[], Replacements]) -> None:
        self.prefixes = tuple(prefixes)
        self._load = load
        self._replacements: Replacements = {}

    def _peer_modules(self):
        for name, module in list(sys.modules.items()):
            if module is not None and any(name == p or name.startswith(p + ".") for p in self.prefixes):
                yield module

    def _rebind(self, mapping: Replacements) -> List[str]:
        sites = []
        for module in self._peer_modules():
            for attr, value in list(vars(module).items()):
                if isinstance(value, type) and value in mapping:
                    setattr(module, attr, mapping[value])
                    sites.append(f"{module.__name__}.{attr}")
        return sorted(sites)

    @property
    def active(self) -> bool:
        """True between :meth:`patch` and :meth:`unpatch`."""
        return bool(self._replacements)

    def patch(self) -> List[str]:
        """Rebind the peer's loss classes to fastclap's in every imported module of the peer; returns the
        ``module.attribute`` sites changed by this call (a second call changes only modules imported since)."""
        if not self._replacements:  # once patched, the peer's modules hold fastclap's classes: keep the map
            self._replacements = dict(self._load())
        return self._rebind(self._replacements)

    def unpatch(self) -> List[str]:
        """Give the peer's modules their own classes back, also modules imported while patched (which bound
        fastclap's class then); returns the sites restored. No-op when nothing is patched."""
        restored = self._rebind({new: old for old, new in self._replacements.items()})
        self._replacements = {}
        return restored

    @contextlib.contextmanager
    def patched(self) -> Iterator[List[str]]:
        """``with patched() as sites: ...`` - patched inside, restored on exit unless it was patched before."""
        was_active = self.active
        sites = self.patch()
        try:
            yield sites
        finally:
            if not was_active:
                self.unpatch()
