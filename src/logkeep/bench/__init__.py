"""Benchmarks run by `logkeep bench ...`: they print numbers and ratios, they assert nothing."""
