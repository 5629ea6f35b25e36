"""``python -m benchmarks``: run every benchmark and write the results table."""

from __future__ import annotations

import sys

from .run import main

sys.exit(main())
