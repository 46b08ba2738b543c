"""``python -m nodekeeper.launcher``."""

import sys

from .cli import main

sys.exit(main())
