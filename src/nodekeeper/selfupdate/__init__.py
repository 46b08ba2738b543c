"""The keeper updating itself, in three parts named for what each is.

- :mod:`.handover` -- the keeper's half of the launcher protocol: is there a launcher to
  hand over to, the hand-over itself (request file, stop, ``EXIT_SELF_UPDATE``), and the
  outcome records the launcher leaves, turned into reports.
- :mod:`.runner` -- what carries out one keeper update plan: fetch, verify, install and
  preflight through the updater's own steps, then the hand-over. The check loop around
  it is the node's (``nodekeeper.updater.cycle``).
- :mod:`.entry` -- ``python -m nodekeeper.selfupdate.entry``, what the launcher runs: the
  keeper plus ``version`` for preflight, outcome delivery and the hand-over exit code.

``nodekeeper.launched`` stays as a shim for the entry: release manifests and launchers
shipped before this package name it (docs/decisions/045-one-self-update-package.md).

Nothing is imported here: the entry starts every keeper, and the keeper's idle memory
is kept low by importing only what a run needs.
"""
