"""``python -m nodekeeper.nodeshim SPEC.json``: see ``main``."""

import sys

from .main import main

sys.exit(main())
