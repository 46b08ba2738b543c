"""`nodekeeper quickstart`: the whole local system on embedded defaults.

A control plane on loopback, the reference storage node published and set up, a keeper
(a real `nodekeeper run` process) that installs and supervises it; then a newer version
is published and rolled out while a live view shows versions, states and events.
Ctrl-C stops everything cleanly, and so does every other way quickstart can end; what
an earlier run left is ended by the next one (DESIGN.md, "Quickstart lifecycle").
"""

from .run import run_quickstart

__all__ = ["run_quickstart"]
