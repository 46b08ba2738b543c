"""``python -m storagenode``: the same as the ``storagenode`` console script."""

from storagenode.cli import main

raise SystemExit(main())
