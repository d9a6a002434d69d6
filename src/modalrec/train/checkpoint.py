"""Moved to :mod:`modalrec.core.checkpoint`; this name stays importable."""

from modalrec.core.checkpoint import *  # noqa: F401,F403
