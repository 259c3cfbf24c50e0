"""The README's two commands are the ones CI runs (the test command verbatim in .ci/run, the main-job command
extracted from the README by .ci/main_job.sh), and the main job's config builds its model with the packages
the main-job command installs (`fastclap train --dry-run`)."""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def _commands():
    spec = importlib.util.spec_from_file_location("readme_commands", REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.readme_commands((REPO / "README.md").read_text(encoding="utf-8")), module


def test_ci_runs_the_readme_commands():
    commands, _ = _commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands["tests"] in ci and "bash .ci/main_job.sh" in ci
    assert "readme_commands.py main" in (REPO / ".ci" / "main_job.sh").read_text()
    # the main job's setup installs what large_batch.json needs beyond the train extra: the GE2E weights
    setup = commands["main"].rsplit(" && ", 1)[0]
    assert "pip install -q -c constraints.txt --no-deps resemblyzer" in setup


def test_readme_command_extraction_names_what_is_missing():
    _, module = _commands()
    with pytest.raises(ValueError, match="Two commands"):
        module.readme_commands("# x\n\n## Other\n")
    with pytest.raises(ValueError, match="two one-line bash blocks, found 1"):
        module.readme_commands("## Two commands\n\n```bash\necho a\n```\n\n## Next\n")


def _train(*args):
    return subprocess.run([sys.executable, "-m", "fastclap", "train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "RANK"})


def test_large_batch_dry_run_builds_the_model():
    pytest.importorskip("deepspeed")
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("the resemblyzer wheel (GE2E weights) is not installed")
    proc = _train("--config", "configs/large_batch.json", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("fastclap: dry run of configs/large_batch.json: model built, ")
    assert "audio tower fusion" in first and "resemblyzer" in first and "pretrained.pt" in first
    assert "corpus root ../shared/data/emodb: " in proc.stdout


def test_dry_run_names_a_missing_weights_file(tmp_path):
    pytest.importorskip("deepspeed")
    missing = tmp_path / "no_ge2e.pt"
    proc = _train("--config", "configs/large_batch.json", "--dry-run", "--set", f"fastclap.model.audio.path={missing}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and str(missing) in proc.stderr
