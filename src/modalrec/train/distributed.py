"""Moved to :mod:`modalrec.core.distributed`; this name stays importable."""

from modalrec.core.distributed import *  # noqa: F401,F403
