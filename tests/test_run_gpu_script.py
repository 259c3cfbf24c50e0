"""`bash benchmarks/run_gpu.sh --collect-only` in an environment as lean as the GPU machine's image may be.

The environment is a fresh virtual environment (``python -m venv --without-pip``) whose site-packages holds
symbolic links to exactly these distributions of the running test environment: torch, triton, numpy, pytest
and pytest-benchmark, the distributions they require (read from their metadata, transitively), and fastclap
itself (its installed files: the editable finder that maps ``fastclap`` and ``fastclap.kernels`` to this
checkout). Nothing else is importable there, which the test checks first (pydantic, soundfile, opensmile,
deepspeed, transformers, open_clip, inf_cl, matplotlib all missing). Links, not copies: the same files CI
installed, in seconds instead of a second torch install.

Then the script must exit 0, pass its import check, and collect every test marked gpu with no error: the
modules it names are exactly the test modules that use the gpu mark, and the node ids it collects are the
ones the full test environment collects from them.
"""
from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import sysconfig
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
IMAGE_PACKAGES = ("torch", "triton", "numpy", "pytest", "pytest-benchmark")
ABSENT = ("pydantic", "soundfile", "opensmile", "deepspeed", "transformers", "open_clip", "inf_cl", "matplotlib")


# Distributions are looked up in the running environment's site-packages only: the checkout itself may hold a
# ``fastclap.egg-info`` (an editable install writes one there) that is not an installed distribution.
SITE_DIRS = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def _installed(name: str) -> metadata.Distribution:
    dist = next(iter(metadata.distributions(name=name, path=SITE_DIRS)), None)
    if dist is None:
        raise metadata.PackageNotFoundError(name)
    return dist


def _closure(names):
    """The named distributions and every distribution they require (no extras), transitively."""
    found, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        dist = _installed(name)
        found[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _lean_venv(dest: pathlib.Path) -> pathlib.Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True, timeout=120)
    python = dest / "bin" / "python"
    site = pathlib.Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    try:
        dists = _closure(IMAGE_PACKAGES + ("fastclap",))
    except metadata.PackageNotFoundError as exc:
        pytest.fail(f"the test environment lacks a distribution the lean environment links to: {exc}")
    for dist in dists.values():
        root = pathlib.Path(dist.locate_file(""))
        tops = {pathlib.PurePath(f).parts[0] for f in dist.files or [] if ".." not in pathlib.PurePath(f).parts}
        for top in sorted(tops - {"__pycache__"}):
            if (root / top).exists() and not (site / top).exists():
                (site / top).symlink_to(root / top)
    return python


def _uses_gpu_mark(path: pathlib.Path) -> bool:
    """Whether the module's code (not a string in it) refers to ``pytest.mark.gpu``."""
    return any(isinstance(node, ast.Attribute) and node.attr == "gpu" and isinstance(node.value, ast.Attribute)
               and node.value.attr == "mark" for node in ast.walk(ast.parse(path.read_text())))


def _gpu_marked_modules():
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if _uses_gpu_mark(p))


def _collected_ids(stdout: str):
    return [line.strip() for line in stdout.splitlines() if "::" in line and line.startswith("tests/")]


def test_collect_only_in_an_environment_with_only_torch_triton_numpy_pytest(tmp_path):
    python = _lean_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET", "VIRTUAL_ENV")}
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u, sys; "
                            "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *ABSENT],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "", (
        f"the lean environment is not lean: {probe.stdout} {probe.stderr[-2000:]}")

    run = subprocess.run(["bash", str(REPO / "benchmarks" / "run_gpu.sh"), "--collect-only"], cwd=REPO,
                         env=dict(env, PYTHON=str(python)), capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "none of pydantic, soundfile, opensmile, deepspeed, transformers loaded" in out, out[-4000:]
    summary = [ln for ln in run.stdout.splitlines() if re.search(r"\btests? collected\b", ln)]
    assert len(summary) == 1 and "error" not in summary[0], summary
    ids = _collected_ids(run.stdout)
    assert ids, out[-4000:]

    modules = _gpu_marked_modules()
    assert sorted({i.split("::")[0] for i in ids}) == modules, "run_gpu.sh must name every gpu test module"
    full = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p",
                           "no:cacheprovider", *modules], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stdout[-4000:] + full.stderr[-2000:]
    assert sorted(ids) == sorted(_collected_ids(full.stdout))


def test_scripts_parse():
    for name in ("run_gpu.sh", "fetch_wheels.sh", "tree_hash.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / name)]).returncode == 0, name


def test_tree_hash_follows_the_sources_and_ignores_caches(tmp_path):
    """The hash run_gpu.sh compares with .whl/stamp.txt changes with a source file's content and not with a
    byte-code cache or a results file."""
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "tree_hash.sh").write_text((REPO / "benchmarks" / "tree_hash.sh").read_text())
    for folder in ("fastclap", "kernels", "tests"):
        (tmp_path / folder / "__pycache__").mkdir(parents=True)
        (tmp_path / folder / "a.py").write_text(f"# {folder}\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")

    def tree_hash():
        run = subprocess.run(["bash", str(tmp_path / "benchmarks" / "tree_hash.sh")], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert re.fullmatch(r"[0-9a-f]{64}", run.stdout.strip()), run.stdout
        return run.stdout.strip()

    first = tree_hash()
    (tmp_path / "fastclap" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"\0")
    (tmp_path / "benchmarks" / "results" / "gpu.jsonl").write_text("{}\n")
    assert tree_hash() == first
    (tmp_path / "kernels" / "a.py").write_text("# kernels, edited\n")
    assert tree_hash() != first
    (tmp_path / "kernels" / "a.py").write_text("# kernels\n")
    assert tree_hash() == first
    (tmp_path / "constraints.txt").write_text("torch==2.11.0\n")
    assert tree_hash() != first
