"""Benchmarks: tether side by side with Jumpstarter 0.9 and raw Python sockets.

Run with ``make bench`` or ``python -m bench [--quick] [--only raw,jumpstarter,tether]``.
Modules here import only the standard library at import time, because
``bench.jumpstarter_bench`` runs inside a separate venv that has no tether and no rich.
"""
