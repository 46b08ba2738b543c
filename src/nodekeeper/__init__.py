"""nodekeeper: keeps storage nodes up to date and alive; control plane for staged rollouts."""

__version__ = "0.1.0"
