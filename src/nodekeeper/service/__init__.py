"""Running nodekeeper as a service: the Windows service host and its registration."""
