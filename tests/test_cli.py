"""Command lines: the `fastclap` command and `python -m fastclap`, help texts (real command names, every
option explained, defaults shown), and user errors as `error: <message>` + exit status 2 without a traceback
in every entry point (train, data, evaluate, experiment, benchmarks), `--debug` showing it."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

from fastclap.cli import HelpFormatter, build_parser, main as fastclap_main, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=180, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


def _fastclap_exe():
    """The installed console script (beside this interpreter in a venv), else None."""
    here = os.path.join(os.path.dirname(sys.executable), "fastclap")
    return here if os.path.isfile(here) else shutil.which("fastclap")


def test_import_fastclap_loads_no_heavy_module():
    # `import fastclap` must not pull torch (or triton, deepspeed, transformers, opensmile): the command's
    # --help answers at once. The loss still comes with `from fastclap import SmoothCLAPLoss`.
    code = ("import sys, fastclap\n"
            "heavy = [m for m in ('torch', 'triton', 'deepspeed', 'transformers', 'opensmile') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from fastclap import SmoothCLAPLoss, smooth_clap_loss\n"
            "assert 'torch' in sys.modules and callable(smooth_clap_loss)\n"
            "assert 'triton' not in sys.modules and 'deepspeed' not in sys.modules\n"
            "print('OK', sorted(set(fastclap.__all__) - set(dir(fastclap))))")
    out = _run("-c", code)
    assert out.returncode == 0 and "OK []" in out.stdout, out.stderr[-2000:]


def test_unknown_attribute_is_an_attribute_error():
    import fastclap

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastclap.nope  # noqa: B018
    assert fastclap.losses.SmoothCLAPLoss is fastclap.SmoothCLAPLoss  # submodules still reachable as attributes


@pytest.mark.parametrize("launcher", ["console", "module"])
def test_fastclap_command_lists_subcommands(launcher):
    if launcher == "console":
        exe = _fastclap_exe()
        if exe is None:
            pytest.skip("the fastclap console script is not installed (pip install -e .)")
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
        prog = "fastclap"
    else:
        out = _run("-m", "fastclap", "--help")
        prog = "python -m fastclap"
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: {prog} ")
    for name in ("train", "prepare", "evaluate", "experiment", "bench"):
        assert f"    {name}" in out.stdout


@pytest.mark.parametrize("command", [["train"], ["prepare"], ["evaluate"], ["experiment"], ["bench", "sweep"],
                                     ["bench", "plot"], ["bench", "targets"]])
def test_subcommand_help_names_the_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        fastclap_main([*command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: fastclap {' '.join(command)} "), text[:200]
    assert "--debug" in text


HELP_PROBE = r"""
import contextlib, io, sys
from fastclap.cli import main
with contextlib.redirect_stdout(io.StringIO()) as text:
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert exc.code == 0, exc.code
assert text.getvalue().startswith("usage: "), text.getvalue()[:300]
print("LOADED", [m for m in ("torch", "deepspeed", "transformers", "triton", "opensmile", "matplotlib")
                 if m in sys.modules])
"""


@pytest.mark.parametrize("command", [["train"], ["prepare"], ["evaluate"], ["experiment"], ["bench"],
                                     ["bench", "sweep"], ["bench", "plot"], ["bench", "targets"]])
def test_subcommand_help_imports_nothing_heavy(command):
    # --help answers before torch, DeepSpeed, transformers (and matplotlib) load: the parser is built first.
    # The import set is checked (in a fresh interpreter), not the time.
    out = _run("-c", HELP_PROBE, *command, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, out.stdout[-500:]


def test_train_script_help_imports_nothing_heavy():
    code = ("import runpy, sys\nsys.argv = ['fastclap/train.py', '--help']\n"
            "try:\n    runpy.run_path('fastclap/train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules])")
    out = _run("-c", code)
    assert out.returncode == 0 and "LOADED []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]


def _parsers():
    """Every parser of the project, as (name, parser)."""
    from benchmarks import sweep
    from fastclap import evaluate, experiment, train
    from fastclap.data import cli as data_cli

    out = [("fastclap", build_parser()), ("evaluate", evaluate.build_parser()),
           ("experiment", experiment.build_parser()), ("sweep", sweep.build_parser())]
    data = data_cli.build_parser()
    sub = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    out += [(f"data {k}", p) for k, p in sub.choices.items()]
    out.append(("train", train.build_parser()))
    return out


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _parsers():
        assert parser.formatter_class is HelpFormatter, name
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"
            shown = HelpFormatter("x")._get_help_string(action)
            has_default = action.default not in (None, False, [], argparse.SUPPRESS) and action.option_strings
            if has_default:
                assert "default" in shown, f"{name}: {action.option_strings} does not show its default"


def test_prepare_help_explains_the_options_the_issue_named(capsys):
    from fastclap.data.cli import main as data_main

    with pytest.raises(SystemExit):
        data_main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m fastclap.data prepare")
    for option, words in (("--on-bad-audio", "(default: error)"), ("--workers", "(default: "),
                          ("--seed", "(default: 0)"), ("--no-progress", "progress bar"),
                          ("--test-root", "folder of --test-corpus")):
        assert option in text and words in text, option


def test_evaluate_and_sweep_help_show_split_default_and_presets(capsys):
    from benchmarks.sweep import main as sweep_main
    from fastclap.evaluate import main as evaluate_main

    with pytest.raises(SystemExit):
        evaluate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m fastclap.evaluate") and "split to score (default: test)" in text
    with pytest.raises(SystemExit):
        sweep_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m benchmarks.sweep")
    for preset in ("quick (the default):", "cpu:", "cpu-full:", "gpu:"):
        assert preset in text


def test_sweep_without_a_preset_runs_the_quick_one_into_the_work_folder():
    from benchmarks.sweep import REPO_ROOT, build_parser, default_output

    assert build_parser().parse_args([]).preset == "quick"
    assert default_output("cpu", "quick").parent == REPO_ROOT / "runs" / "bench"  # not the committed results
    assert default_output("cpu", "cpu").parent == REPO_ROOT / "benchmarks" / "results"


# --- errors ---------------------------------------------------------------------------------------------

def test_run_cli_turns_user_errors_into_one_line(capsys, monkeypatch):
    monkeypatch.delenv("FASTCLAP_DEBUG", raising=False)

    def boom(exc):
        def main(argv):
            raise exc
        return main
    assert run_cli(boom(ValueError("--x: must be positive")), []) == 2
    assert capsys.readouterr().err == "error: --x: must be positive\n"
    assert run_cli(boom(FileNotFoundError(2, "No such file or directory", "cfg.json")), []) == 2
    assert capsys.readouterr().err == "error: cfg.json: No such file or directory\n"
    assert run_cli(boom(subprocess.CalledProcessError(2, ["python", "-m", "x"])), []) == 2
    assert "exit status 2: python -m x" in capsys.readouterr().err
    assert run_cli(boom(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(ValueError):  # --debug: the traceback comes through
        run_cli(boom(ValueError("x")), ["--debug"])
    monkeypatch.setenv("FASTCLAP_DEBUG", "1")
    with pytest.raises(ValueError):
        run_cli(boom(ValueError("x")), [])
    monkeypatch.delenv("FASTCLAP_DEBUG")
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: its traceback stays
        run_cli(boom(ZeroDivisionError("bug")), [])
    assert run_cli(lambda a: {"summary": 1}, []) == 0 and run_cli(lambda a: 3, []) == 3


def _assert_user_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n in last, last


def test_train_user_error_is_one_line_and_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train_micro_batch_size_per_gpu": 4, "fastclap": {"loss": {"sof_weight": 1}}}))
    _assert_user_error(_run("fastclap/train.py", "--config", str(bad)), "sof_weight")
    _assert_user_error(_run("-m", "fastclap", "train", "--config", str(tmp_path / "missing.json")), "missing.json")
    proc = _run("fastclap/train.py", "--config", str(bad), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "sof_weight" in proc.stderr


def test_data_evaluate_experiment_user_errors(tmp_path, capsys):
    from fastclap.data.cli import main as data_main
    from fastclap.evaluate import main as evaluate_main
    from fastclap.experiment import main as experiment_main

    assert data_main(["prepare", "--corpus", "emodb", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "error: --root is required for --corpus emodb\n"
    assert evaluate_main(["--checkpoint", str(tmp_path / "nope"), "--prepared", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: --checkpoint ")
    # the experiment: a data root without the corpora
    rc = experiment_main(["--data-root", str(tmp_path / "no_data"), "--prepared-root", str(tmp_path / "p"),
                          "--work-dir", str(tmp_path / "w"), "--settings", "emodb", "--losses", "clap",
                          "--seeds", "0", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in err
    # the same through the fastclap command, as a subprocess (module entry points and the console command)
    _assert_user_error(_run("-m", "fastclap", "prepare", "--corpus", "emodb", "--out", str(tmp_path / "o")),
                       "--root is required")
    _assert_user_error(_run("-m", "fastclap.evaluate", "--checkpoint", str(tmp_path / "nope"), "--prepared",
                            str(tmp_path)), "nope")


def test_benchmark_user_errors(tmp_path, capsys):
    from benchmarks.plot import main as plot_main
    from benchmarks.sweep import main as sweep_main
    from benchmarks.targets import main as targets_main

    assert plot_main([str(tmp_path / "none.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.jsonl'}: No such file or directory\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert targets_main(["--cpu", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:1: not a JSON result row")
    assert sweep_main(["--preset", "quick", "--out", str(tmp_path / "dir_not_file" / "x" / "\0bad.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    _assert_user_error(_run("-m", "fastclap", "bench", "plot", str(bad)), "not a JSON result row")


def test_closed_output_pipe_ends_quietly():
    code = ("import sys\nfrom fastclap.cli import run_cli\n"
            "def main(argv):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "sys.exit(run_cli(main, []))")
    proc = _run("-c", code)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_lazy_packages_load_nothing_heavy_and_resolve_every_name():
    # fastclap.data and fastclap.evaluation name their API lazily (the parsers import light modules of them)
    code = ("import sys, fastclap.data as d, fastclap.evaluation as e\n"
            "assert 'torch' not in sys.modules, 'torch loaded by the package imports'\n"
            "missing = [n for m in (d, e) for n in m.__all__ if getattr(m, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert callable(d.prepare) and d.prepare.__module__ == 'fastclap.data.prepare'\n"
            "print('OK', sorted(set(d.__all__) - set(dir(d))), sorted(set(e.__all__) - set(dir(e))))")
    out = _run("-c", code)
    assert out.returncode == 0 and "OK [] []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]
