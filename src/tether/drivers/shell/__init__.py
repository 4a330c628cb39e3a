"""Shell: configured commands run on the exporter host, with streamed output and exit status.

Only commands named in the driver's config can run; arguments fill ``{name}`` placeholders,
type-checked and shell-quoted.
"""

from ._client import ShellClient, ShellResult
from ._driver import CommandSpec, ParamSpec, Shell
from ._interface import CommandInfo, ParamInfo, ShellInterface, ShellOutput
from ._process import CommandFailed, ProcessResult, run_command

__all__ = [
    "CommandFailed",
    "CommandInfo",
    "CommandSpec",
    "ParamInfo",
    "ParamSpec",
    "ProcessResult",
    "Shell",
    "ShellClient",
    "ShellInterface",
    "ShellOutput",
    "ShellResult",
    "run_command",
]
