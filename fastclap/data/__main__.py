"""``python -m fastclap.data``: see :mod:`fastclap.data.cli`."""
import sys

from .cli import main

sys.exit(main())
