"""Shared fixtures. Tests never sleep to wait: they wait on events or use the test kit."""

from hypothesis import HealthCheck, settings

# Timing checks fail on a loaded 2-core CI machine without saying anything about the code:
# examples may take as long as they need (each test's own timeout still applies).
settings.register_profile("tether", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tether")
