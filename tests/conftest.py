"""Shared fixtures. Tests never sleep to wait: they wait on events or use the test kit."""
