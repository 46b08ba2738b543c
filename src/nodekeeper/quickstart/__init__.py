"""`nodekeeper quickstart`: the whole local system on embedded defaults.

A control plane on loopback, the reference storage node published and set up, a keeper
(a real `nodekeeper run` process) that installs and supervises it; then a newer version
is published and rolled out while a live view shows versions, states and events.
Ctrl-C stops everything cleanly, and so does every other way quickstart can end; what
an earlier run left is ended by the next one (docs/decisions/035-quickstart-lifecycle.md).

`commands` registers the command; `run.run_quickstart` is the whole run. Nothing is
imported here: the CLI imports `commands` to build its parser, and that must not load
the control plane and the live view into every `nodekeeper` process.
"""
