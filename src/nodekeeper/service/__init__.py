"""nodekeeper as an operating-system service.

Linux: `systemd` renders and installs the unit that runs the launcher, `commands` is the
`nodekeeper service` command group. Windows: `windows_host` is the service (the launcher
hosted by the SCM), `windows_config` its registration, `install_actions` and `acl` what
the MSI's custom actions run (decision 066).
"""
