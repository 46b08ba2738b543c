"""Sizes such as ``500 GB``, ``2TB`` or ``1.5 TiB``: the keeper's own parser (pure)."""

from nodekeeper.units import InvalidSizeError, format_size, parse_size

__all__ = ["InvalidSizeError", "format_size", "parse_size"]
