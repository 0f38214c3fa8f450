"""``python -m bench.data fetch|info``: the same as ``python -m bench data ...``."""

import sys

from bench.data.cli import main

sys.exit(main())
