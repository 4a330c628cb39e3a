"""Controller scale benchmark: ``python -m bench.controller`` (see ``__main__``)."""
