"""What the trainer prints: one line per evaluation (step, eval loss, UAR, WAR, chance), a final summary with
the last validation UAR, library INFO logging hidden unless --verbose; `fastclap train` is the trainer."""
import json
import logging
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("deepspeed")

from fastclap.engine.console import eval_line, summary_line  # noqa: E402
from fastclap.train import main  # noqa: E402
from test_train_helpers import tiny_config, write_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_RE = re.compile(r"^eval step (\d+)/(\d+): loss ([0-9.]+), UAR ([0-9.]+)%, WAR ([0-9.]+)% \(chance ([0-9.]+)%\)$")


def _evals(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if "eval/uar" in r]


def test_console_lines_match_the_metrics_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=4, eval={"every": 2, "batch_size": 16})
    summary = main(["--config", write_config(tmp_path / "c.json", cfg)])
    out = capsys.readouterr().out.splitlines()
    lines = [m for m in map(EVAL_RE.match, out) if m]
    evals = _evals(run_dir)
    assert [int(m.group(1)) for m in lines] == [r["step"] for r in evals] == [2, 4]
    for m, rec in zip(lines, evals):  # the printed numbers are the recorded ones, rounded
        assert int(m.group(2)) == 4
        assert float(m.group(3)) == pytest.approx(rec["eval/loss"], abs=5e-5)
        assert float(m.group(4)) == pytest.approx(100 * rec["eval/uar"], abs=0.05)
        assert float(m.group(5)) == pytest.approx(100 * rec["eval/war"], abs=0.05)
        assert float(m.group(6)) == pytest.approx(100 * rec["eval/chance"], abs=0.05)
    final = out[-1]
    assert final.startswith("fastclap: 4 steps in ") and final.endswith(f"run dir {run_dir}")
    assert f"validation UAR {100 * evals[-1]['eval/uar']:.1f}% (chance {100 * evals[-1]['eval/chance']:.1f}%)" in final
    assert summary["last_eval"]["eval/uar"] == evals[-1]["eval/uar"]
    assert logging.getLogger("DeepSpeed").getEffectiveLevel() == logging.WARNING


def test_verbose_lets_library_info_through(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", stage=0, steps=1)
    try:
        main(["--config", write_config(tmp_path / "c.json", cfg), "--verbose"])
        assert logging.getLogger("DeepSpeed").getEffectiveLevel() == logging.INFO
    finally:
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    assert "validation UAR" not in capsys.readouterr().out.splitlines()[-1]  # no evaluation in this run


def test_summary_line_without_and_with_evaluation():
    hist = [{"loss": 3.0, "pairs_per_s": 10.0, "loss_share": 0.5}, {"loss": 2.0, "pairs_per_s": 30.0,
                                                                    "loss_share": 0.1}]
    assert summary_line(hist, 1.25, "runs/x") == ("fastclap: 2 steps in 1.2s, final loss 2.0000, 30 pairs/s, "
                                                  "loss share 10.0% of step time, run dir runs/x")
    ev = {"eval/loss": 2.5, "eval/uar": 0.3333, "eval/war": 0.25, "eval/chance": 0.125}
    assert summary_line(hist, 1.25, "runs/x", ev).endswith(", validation UAR 33.3% (chance 12.5%), run dir runs/x")
    assert eval_line(40, 120, ev) == "eval step 40/120: loss 2.5000, UAR 33.3%, WAR 25.0% (chance 12.5%)"


def test_fastclap_train_command_is_quiet(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=2, steps=2, eval={"every": 2, "batch_size": 16})
    own = ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
           "MASTER_PORT")  # set in this process by the in-process runs above
    env = {k: v for k, v in os.environ.items() if k not in own}
    proc = subprocess.run([sys.executable, "-m", "fastclap", "train", "--config", write_config(tmp_path / "c.json", cfg)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert sum(bool(EVAL_RE.match(line)) for line in out) == 1 and out[-1].startswith("fastclap: 2 steps in ")
    noise = [line for line in (proc.stdout + proc.stderr).splitlines()
             if "[INFO]" in line or "Loading weights" in line]
    assert not noise, noise


def test_quiet_libraries_hides_transformers_bars_and_info(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from fastclap.engine.console import quiet_libraries

    hf = transformers.utils.logging
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(var, raising=False)  # restored (removed) after the test
    try:
        quiet_libraries(verbose=False, progress_bars=False)  # e.g. the evaluator with --no-progress
        assert not hf.is_progress_bar_enabled() and hf.get_verbosity() == logging.WARNING
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        quiet_libraries(verbose=True)
        assert hf.get_verbosity() == logging.INFO
    finally:
        hf.set_verbosity(logging.WARNING)
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
