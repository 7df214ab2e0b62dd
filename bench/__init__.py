"""Benchmarks: pytest-benchmark suites (``test_bench_*.py``) and the report generator (``report.py``)."""
