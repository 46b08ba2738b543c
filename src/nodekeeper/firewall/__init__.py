"""Is inbound traffic to the node's port allowed? The firewall check (decision 065).

One job per module:

- ``target``: the node's port (keeper config, else the node's own config file) and
  program;
- ``observations``: what the probes recorded, as data (the tests' recorded answers);
- ``decision``: the pure decision, with ``windows_decision`` (Windows Firewall, IsPortAllowed,
  Security Center) and ``linux_decision`` + ``linux_rules`` (ufw, firewalld, nftables,
  iptables) → ``verdict``: allowed / blocked with the fix / unknown with why, per protocol;
- ``windows_probe``: COM through pywin32, in a child process; ``linux_probe``: the tools;
- ``check``: probe within a deadline, then decide; never raises;
- ``netsh``: the rule commands, shared by the MSI (``msi_custom_actions``) and
  `nodekeeper firewall allow`; ``linux_commands``: what to run on Linux (printed only).

The keeper's periodic check and the CLI read the keeper's config, so they live in the
keeper (``keeper/firewall_watch.py``, ``keeper/firewall_commands.py``); this package
imports nothing of the keeper. Windows modules import pywin32 inside their functions, so
the package imports everywhere.
"""

from nodekeeper.firewall.netsh import MsiFirewallActions, NetshCommand, msi_custom_actions
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import ProtocolVerdict, Verdict

__all__ = [
    "MsiFirewallActions",
    "NetshCommand",
    "ProtocolVerdict",
    "Target",
    "Verdict",
    "msi_custom_actions",
]
