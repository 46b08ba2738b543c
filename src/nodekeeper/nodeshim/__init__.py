"""The node shim: a small process that owns the node so that the keeper can be replaced
while the node keeps running (docs/decisions/063-node-shim-owns-the-node-across-handovers.md).

The pattern of containerd-shim and podman's conmon. The shim starts the node as its child,
relays the node's output to whichever keeper is attached (and keeps it while none is),
is the one that learns the node's exit status, and stops the node when the launcher, the
owner of the whole service, goes away.

Standard library only (an import contract says so): a shim started by one keeper release
keeps running under the next, so it must not depend on anything a release changes.

- ``protocol``: what keeper and shim say to each other (a versioned interface);
- ``relay``: whole lines out of a byte stream, and the bounded backlog (pure);
- ``childsetup``: what runs in the node between fork and exec (limits, parent death);
- ``winjob``: on Windows, the kill-on-close job that makes the node die with the shim;
- ``anchor``: waiting for the launcher's death;
- ``main``: the program.
"""
