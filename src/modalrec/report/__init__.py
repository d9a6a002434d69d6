"""Reports on runs and benchmarks: plots (``modalrec.report.plots``; matplotlib is optional, imported lazily)."""
