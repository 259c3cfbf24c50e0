"""The ``fastclap`` command and what every fastclap command line shares.

    fastclap train --config configs/quickstart.json      # = python fastclap/train.py (deepspeed fastclap/train.py)
    fastclap prepare --corpus sample --out runs/data/s   # = python -m fastclap.data prepare
    fastclap evaluate --checkpoint runs/quickstart ...   # = python -m fastclap.evaluate
    fastclap experiment --prepared-root P --work-dir W   # = python -m fastclap.experiment
    fastclap bench sweep|plot|targets ...                # = python -m benchmarks.sweep|plot|targets (repository)
    python -m fastclap ...                               # the same as fastclap ...

Shared by every entry point (train, data, evaluate, experiment, benchmarks):

* :func:`run_cli` turns a user error (``ValueError``, ``OSError``, a failed subprocess) into one line
  ``error: <message>`` on stderr and exit status 2, without a traceback; ``--debug`` (or ``FASTCLAP_DEBUG=1``)
  lets the traceback through. Ctrl-C gives ``interrupted`` and status 130.
* :class:`HelpFormatter` shows every option's default in ``--help`` and keeps description line breaks.
* :func:`add_debug_flag` documents ``--debug`` in a parser.

This module imports nothing heavy (no torch), so ``fastclap --help`` answers at once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: Exceptions that mean "the input is wrong" (a bad argument, file, row or config key), not a bug.
USER_ERRORS: Tuple[type, ...] = (ValueError, OSError, subprocess.CalledProcessError)
DEBUG_FLAG = "--debug"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with ``(default: X)`` after each option that has a meaningful default (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is argparse.SUPPRESS or default is None or default is False
                or default == [] or action.option_strings == [] and action.nargs in ("*", "+")):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` (show the full traceback of an error) to ``parser``; :func:`run_cli` reads it."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="on an error, show the full Python traceback instead of one 'error:' line")


def debug_requested(argv: Sequence[str]) -> bool:
    """True when ``--debug`` is among the arguments or ``FASTCLAP_DEBUG`` is set to a non-empty value but 0."""
    return DEBUG_FLAG in argv or os.environ.get("FASTCLAP_DEBUG", "0") not in ("", "0")


def run_cli(main: Callable[[List[str]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(argv)`` and return its exit status (an int result, else 0).

    A :data:`USER_ERRORS` exception prints ``error: <message>`` to stderr and returns 2 (with ``--debug``: it is
    re-raised, traceback included). ``KeyboardInterrupt`` prints ``interrupted`` and returns 130; a closed
    output pipe (``| head``) returns 141 quietly. Other exceptions (bugs) keep their traceback. ``argv``
    defaults to ``sys.argv[1:]``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = main(argv)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as a shell tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again
        return 141
    except USER_ERRORS as exc:
        if debug_requested(argv):
            raise
        print(f"error: {error_message(exc)}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if debug_requested(argv):
            raise
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    return result if isinstance(result, int) else 0


def error_message(exc: BaseException) -> str:
    """One line for a user error: the exception's message (a FileNotFoundError with its file name)."""
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return f"command failed with exit status {exc.returncode}: {cmd}"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip()
    return text or type(exc).__name__


# --- the fastclap command -------------------------------------------------------------------------------

def _bench(argv: List[str], prog: str) -> int:
    tools = ("sweep", "plot", "targets")
    if not argv or argv[0] not in tools:
        ap = argparse.ArgumentParser(prog=prog, formatter_class=HelpFormatter,
                                     description="Loss microbenchmarks (the repository's benchmarks/ folder).")
        ap.add_argument("tool", choices=tools, help="sweep: measure; plot: draw PNGs; targets: PASS / FAIL")
        ap.parse_args(argv[:1])  # --help, or an error naming the choices
        return 2
    return run_cli(lambda a: _import_benchmarks(a[0]).main(a[1:], prog=f"{prog} {a[0]}"), argv)


def _import_benchmarks(tool: str) -> Any:
    """``benchmarks.<tool>``: it lives in the repository checkout beside ``fastclap/``, not in the installed
    package. Raises FileNotFoundError when the checkout is nowhere to be found."""
    try:
        return importlib.import_module(f"benchmarks.{tool}")
    except ImportError:
        pass
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / f"{tool}.py").is_file():
        raise FileNotFoundError("fastclap bench needs the repository checkout (benchmarks/ is not installed): "
                                "install with `pip install -e .` from the repository, or run "
                                f"`python -m benchmarks.{tool}` from its root")
    sys.path.insert(0, str(root))
    return importlib.import_module(f"benchmarks.{tool}")


def _entry(module: str, attr: str = "main", *prefix: str) -> Callable[[List[str], str], int]:
    """A command that calls ``module.attr([*prefix, *argv], prog=prog)`` (imported only when it runs)."""
    def call(argv: List[str], prog: str) -> int:
        if module == "fastclap.train":  # as `python fastclap/train.py` does, before torch loads OpenMP
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if prefix:  # `fastclap prepare` is `python -m fastclap.data prepare`: the subcommand names itself
            prog = prog.rsplit(" ", 1)[0]
        return getattr(importlib.import_module(module), attr)([*prefix, *argv], prog=prog)
    return call


COMMANDS: Dict[str, Tuple[Callable[[List[str], str], int], str]] = {
    "train": (_entry("fastclap.train", "cli"), "train a model from a DeepSpeed JSON config (fastclap/train.py)"),
    "prepare": (_entry("fastclap.data.cli", "main", "prepare"),
                "prepare a corpus: features, splits, captions (python -m fastclap.data prepare)"),
    "evaluate": (_entry("fastclap.evaluate"), "zero-shot evaluation of a trained run (python -m fastclap.evaluate)"),
    "experiment": (_entry("fastclap.experiment"),
                   "SmoothCLAP vs CLAP on EmoDB and RAVDESS (python -m fastclap.experiment)"),
    "bench": (_bench, "loss microbenchmarks: sweep, plot, targets (python -m benchmarks.sweep|plot|targets)"),
}


def build_parser(prog: str = "fastclap") -> argparse.ArgumentParser:
    """The top-level parser: ``fastclap COMMAND [ARGS...]``."""
    ap = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="fastclap: fused SmoothCLAP / CLAP losses and a DeepSpeed training engine.",
        epilog="Run `fastclap COMMAND --help` for the options of a command. Every command prints "
               "'error: ...' and exits with status 2 on bad input; add --debug for the traceback.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return ap


def _version() -> str:
    from fastclap import __version__

    return __version__


def main(argv: Optional[Sequence[str]] = None, prog: str = "fastclap") -> int:
    """``fastclap COMMAND ARGS``: run COMMAND's entry point with ARGS; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser(prog).parse_args(argv)  # prints help / version, or the error naming the choices
        return 2
    return COMMANDS[argv[0]][0](argv[1:], f"{prog} {argv[0]}")
