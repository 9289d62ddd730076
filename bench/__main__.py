"""``python -m bench``: the POS-mix bench (bench/mix.py). The in-process one: ``python -m bench.inprocess``."""
import sys

from .mix import main

if __name__ == "__main__":
    sys.exit(main())
