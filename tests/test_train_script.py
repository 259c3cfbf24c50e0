"""train.py as a script: fastclap/ never shadows third-party packages, the repo's kernels/ is never top-level."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "fastclap", "train.py")

PROBE = r"""
import runpy, sys, importlib.util
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
here = __import__("os").path.dirname(sys.argv[0])
assert here not in [__import__("os").path.abspath(p) for p in sys.path], sys.path
for name in ("config", "model", "engine", "data", "losses"):
    spec = importlib.util.find_spec(name)
    assert spec is None or not (spec.origin or "").startswith(here), (name, spec)
spec = importlib.util.find_spec("kernels")
assert spec is None or "site-packages" in (spec.origin or ""), spec
print("OK")
"""


def test_script_help_runs():
    out = subprocess.run([sys.executable, TRAIN_PY, "--help"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--config" in out.stdout and "--resume" in out.stdout


def test_script_does_not_shadow_packages(tmp_path):
    # run_path mimics `python fastclap/train.py`: sys.path[0] is fastclap/ until train.py removes it
    code = "import sys; sys.path.insert(0, %r)\n" % os.path.dirname(TRAIN_PY) + PROBE
    out = subprocess.run([sys.executable, "-c", code, TRAIN_PY], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path))
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_script_sets_passive_openmp_wait_unless_given(tmp_path):
    code = ("import os, runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('POLICY', os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = dict(env, OMP_WAIT_POLICY=given) if given else env
        out = subprocess.run([sys.executable, "-c", code, TRAIN_PY], capture_output=True, text=True, timeout=120,
                             cwd=str(tmp_path), env=run_env)
        assert f"POLICY {expected}" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
