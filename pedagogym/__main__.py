"""``python -m pedagogym``: the same command line as ``pedagogym``."""
import sys

from pedagogym.cli import main

sys.exit(main())
