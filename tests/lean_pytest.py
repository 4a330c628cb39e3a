"""What a pytest run inside a test leaves out: the installed plugins it never uses.

The suite runs pytest in subprocesses (pytester, the tutorial, the examples against a lab).
Each such start-up loads every plugin installed by entry point, and schemathesis (with the
hypothesis and anyio plugins, which import it again through hypothesis's own entry points)
costs about 3 s of CPU there, three quarters of the start-up, though none of these inner
runs uses them. tether's own plugins are still loaded by entry point, as a user's are.
"""

from __future__ import annotations

#: ``pytest`` arguments that block the unused plugins.
UNUSED_PLUGINS: tuple[str, ...] = (
    "-p",
    "no:schemathesis",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:anyio",
)

#: The same as an ini file's ``addopts`` (pytester's runs ignore ``PYTEST_ADDOPTS``).
INI = "[pytest]\naddopts = " + " ".join(UNUSED_PLUGINS) + "\n"
