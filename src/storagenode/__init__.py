"""The reference storage node: a small but real piece store that nodekeeper supervises.

It stands for any node binary. The keeper depends only on its outside: the command to
run (from the artifact manifest), ``storagenode version``, the pulse and shutdown
endpoints on the control address, and the exit codes in :mod:`storagenode.exitcodes`.
"""
