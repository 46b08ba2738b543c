"""`nodekeeper quickstart`: placeholder replaced below."""
