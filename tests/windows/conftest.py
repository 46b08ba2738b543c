"""The Wine fixture (tests/windows/wine.py) for the Windows tests."""

from tests.windows.wine import wine  # noqa: F401
