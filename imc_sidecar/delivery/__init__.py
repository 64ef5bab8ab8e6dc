"""Delivery workers: processes that send fan-out copies beside the sidecar (worker.py)."""
