"""The updater's steps from "what to run" to "installed and passed preflight".

One module per step, each usable on its own by the update state machine:

    schedule   when to check next (pure: jitter, first delay, backoff, Retry-After)
    checker    GET the announcement with If-None-Match, validate it
    plan       what to fetch (pure: rollout decision, failed versions, platform artifact)
    identity   the node ID from the node's identity.key
    download   stream to downloads/<name>.part, resumable, bounded, hashed on the way
    verify     size and sha256 against the announcement (the only place), rename
    fetch      download + verify composed (reuses a verified zip), prune downloads/
    unpack     versions/<process>/<version>.tmp-* → fsync → rename, hostile entries refused
    preflight  run `<artifact> version`, require the announced version
    install    unpack + preflight; a failed preflight is discarded
    errors     the typed failures; each carries its ``kind``, report kind and whether
               it marks the release failed

and the node's update state machine around them:

    machine      walks the steps of one update (the step table is ``steps``)
    steps        each step: side effects, recovery after a crash, how an error ends
    state        the journal's value and its transitions; ``journal`` writes it
    recovery     what to do at start with the step in flight
    probation    pass, fail, rollback or hold (pure)
    installs     the data dir layout and the command of an installed version
    notify       a problem said once: log, error index, report
    outcomes     the last outcome and the status snapshot
    interfaces   what the updater needs from outside: node, reports, error index
    retention    what to delete; crashpoints: the crash tests' kill points
    cycle        the check loop (node and keeper alike)

This package imports nothing heavy itself: ``checker``, ``download`` and ``fetch`` pull in httpx,
so the keeper imports them only when it first checks.
"""
