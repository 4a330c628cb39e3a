"""The one thing pyproject.toml cannot say stably: tether's optional C extensions.

``tether.wire._native`` makes in-process calls cheaper (docs/architecture.md, "Waiting without
the GIL"); ``tether.drivers.netboot._tftp_pump`` runs a TFTP transfer's steady state without
the GIL (docs/netboot.md). Both are optional: where one does not build (no C compiler),
tether installs without it and falls back to pure Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tether.wire._native", ["src/tether/wire/_native.c"], optional=True),
        Extension(
            "tether.drivers.netboot._tftp_pump",
            ["src/tether/drivers/netboot/_tftp_pump.c"],
            optional=True,
        ),
    ]
)
