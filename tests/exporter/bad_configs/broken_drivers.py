"""A driver module whose import fails (used by type_import_raises.yaml)."""

raise RuntimeError("relay board library not initialised")
