"""What the benchmark scripts share: running a `modalrec` command or reusing its finished run (runs),
the transfer benchmarks' bookkeeping (transfer) and writing a result file (output)."""
