"""The one thing pyproject.toml cannot say stably: tether's optional C extension.

``tether.wire._native`` makes in-process calls cheaper (docs/architecture.md, "Waiting without
the GIL"). It is optional: where it does not build (no C compiler), tether installs without it
and falls back to pure Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tether.wire._native", ["src/tether/wire/_native.c"], optional=True),
    ]
)
