"""Subprocess entry points for the concurrency and crash-safety tests (run with python -m)."""
