"""``python -m tagrules.cli``."""

from __future__ import annotations

import sys

from tagrules.cli import main

sys.exit(main())
