"""PUMIT benchmark suite: ``python -m benchmarks`` (see :mod:`benchmarks.run` and docs/benchmarks.md)."""
