"""``python -m bench.hostile``: a legitimate client under each flood of issue 12, against the
controller (``controller_part``) and against an exporter (``exporter_part``)."""
