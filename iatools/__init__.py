"""iatools: composable Unix tools for bulk work against archive.org."""

__version__ = "0.1.0"
