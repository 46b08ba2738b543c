"""The control plane: announces versions, ramps rollouts, takes reports."""
