"""The keeper: the long-running service process (supervisor, status API, config)."""
