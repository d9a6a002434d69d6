"""The lowest layer: checkpoint format and distributed helpers (``modalrec.utils`` holds the file helpers)."""
