"""Fuzzing of every weight-file reader with mutated real files: ``python -m tests.fuzz --cases 10000``.

Not collected by pytest (no ``test_*.py`` here); the interesting failures it
found live on as a fixed corpus in tests/test_formats_corpus.py.
"""
