"""modalrec: ID-free, multi-modal, transferable sequential recommendation."""

__version__ = "0.1.0"
