"""Every ```python block of docs/dropin.md runs (each in a fresh namespace, with the peers imported as
``benchmarks/peer_training.py`` imports them for the patch examples - see tests/test_dropin_patch.py - and every
patch undone afterwards) and the diffs name real lines of the peers' training code (the line removed exists in
the installed package)."""
import importlib.util
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "dropin.md"


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def peers_importable():
    """open_clip and LAION-CLAP's training module importable (placeholders for what cannot load beside the CPU
    torch, nothing the examples call); every patch undone after the example."""
    if importlib.util.find_spec("open_clip") is None or importlib.util.find_spec("laion_clap") is None:
        pytest.skip("open-clip-torch and laion-clap are installed by the test setup (.ci/run)")
    from benchmarks.peer_training import import_laion_clap_training, import_open_clip_training
    from fastclap.compat import laion_clap, open_clip

    import_open_clip_training()
    import_laion_clap_training()
    yield
    open_clip.unpatch()
    laion_clap.unpatch()


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_example_runs(index, request):
    code = _blocks("python")[index]
    if "patch" in code:  # the patch examples import the peers; the others need only fastclap
        request.getfixturevalue("peers_importable")
    exec(compile(code, f"{DOC}:python-block-{index}", "exec"), {"__name__": "dropin_example"})


def test_there_are_examples_for_both_codebases():
    code = "\n".join(_blocks("python"))
    assert "fastclap.compat.open_clip" in code and "fastclap.compat.laion_clap" in code


@pytest.mark.parametrize("package,relative", [("open_clip", "factory.py"), ("laion_clap", "training/train.py")])
def test_diff_removes_a_line_that_exists(package, relative):
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed")
    source = (pathlib.Path(list(spec.submodule_search_locations)[0]) / relative).read_text().splitlines()
    removed = [ln[1:] for block in _blocks("diff") for ln in block.splitlines() if ln.startswith("-")]
    assert any(line in source for line in removed)
