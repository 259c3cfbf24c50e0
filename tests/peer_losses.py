"""Peer implementations loaded from their installed ``loss.py`` files alone (their package ``__init__`` pulls
torchvision / model code that cannot load beside the CPU torch): open_clip and LAION-CLAP."""
import importlib.util
import pathlib

import pytest


def _load(package: str, relative: str, module_name: str):
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip(f"{package} is not installed")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def open_clip_loss():
    """open_clip/loss.py of the installed open-clip-torch."""
    return _load("open_clip", "loss.py", "open_clip_loss_file")


def laion_clap_loss():
    """laion_clap/clap_module/loss.py of the installed laion-clap."""
    return _load("laion_clap", "clap_module/loss.py", "laion_clap_loss_file")
