"""``python -m nodekeeper.launched``: the old name of the keeper's entry, kept as a shim.

Keeper releases built before ``nodekeeper.selfupdate`` existed name this module in their
manifest, and a launcher already running when the installer updates the runtime starts
the runtime's keeper under this name. Both must keep working, so this module only runs
:mod:`nodekeeper.selfupdate.entry` (docs/decisions/045-one-self-update-package.md).
"""

from __future__ import annotations

import sys

from nodekeeper.selfupdate.entry import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
