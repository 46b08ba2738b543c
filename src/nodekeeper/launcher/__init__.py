"""The launcher: the small, stable process that runs the keeper and lets it update itself.

It is the one piece that never updates itself (it comes with the installer), so it uses
the standard library only and imports nothing from the rest of nodekeeper: a bad keeper
release cannot break it. One job per module:

    protocol   what the launcher and the keeper agree on (exit code, env, file names)
    decide     pure decisions: what to start, commit or fall back, backoff
    statefile  state.json / request.json / delivered.json, written atomically
    manifest   the argv of an installed keeper version, from its manifest
    child      the keeper process: start, exit, stop, kill (per-OS branches)
    health     one GET /status on the keeper's loopback API
    settings   flags plus data_dir and status.listen from the keeper's config
    run        the loop that carries the decisions out
    cli        ``nodekeeper-launcher`` / ``python -m nodekeeper.launcher``
"""
