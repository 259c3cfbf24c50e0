"""python -m fastclap.experiment"""
import sys

from . import main

sys.exit(main())
