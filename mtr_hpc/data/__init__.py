"""Benchmark loaders: every source format -> `QAExample`."""
