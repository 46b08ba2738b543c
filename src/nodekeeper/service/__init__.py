"""nodekeeper as an operating-system service.

Linux: `systemd` renders and installs the unit that runs the launcher, `commands` is the
`nodekeeper service` command group. The Windows service host will live here too, in
modules of its own.
"""
