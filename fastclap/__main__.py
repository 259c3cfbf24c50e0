"""``python -m fastclap COMMAND ...``: the same as the ``fastclap`` command (see :mod:`fastclap.cli`)."""
import sys

from fastclap.cli import main

sys.exit(main(prog="python -m fastclap"))
