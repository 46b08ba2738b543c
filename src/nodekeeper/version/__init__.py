"""Pure version logic shared by the keeper and the control plane: no I/O in this package."""
