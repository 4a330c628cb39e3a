"""The driver test kit: deterministic, in-process driver tests (after Fuchsia DFv2).

- :class:`DriverRuntime` runs the foreground dispatcher (inside run calls, on a virtual clock)
  and owns background dispatchers.
- :class:`DispatcherBound` reaches an object living on another dispatcher, without deadlocks.
- :class:`TestNode`, :class:`TestEnvironment` and :class:`DriverUnderTest` are the pieces of a
  driver test; :class:`ForegroundDriverTest` / :class:`BackgroundDriverTest` assemble them.
- :func:`serve` runs a driver behind the real wire protocol, for end-to-end client tests.
- :func:`record` / :class:`Recorder` note a client tree's session; :func:`replay` answers as
  recorded, without the device (``pytest --tether-record DIR``).

See docs/testing.md.
"""

from ._bound import DispatcherBound
from ._dispatcher import BackgroundDispatcher, Dispatcher, ForegroundDispatcher, current_dispatcher
from ._driver_under_test import DriverUnderTest, DriverUnderTestState
from ._environment import ComponentDirectory, IncomingDirectory, LogSink, TestEnvironment
from ._fixtures import (
    BackgroundDriverTest,
    DriverTestConfig,
    EmptyEnvironment,
    EnvironmentType,
    ForegroundDriverTest,
)
from ._node import (
    LOG_SINK_PROTOCOL,
    IncomingDirectoryServer,
    OutgoingDirectoryClient,
    StartArgsResult,
    TestNode,
)
from ._record import (
    Recorder,
    RecordingTarget,
    ReplayedTrees,
    ReplayMismatch,
    ReplayTarget,
    load_recording,
    record,
    replay,
    unrecorded,
)
from ._runtime import DriverRuntime
from ._serve import serve

__all__ = [
    "LOG_SINK_PROTOCOL",
    "BackgroundDispatcher",
    "BackgroundDriverTest",
    "ComponentDirectory",
    "Dispatcher",
    "DispatcherBound",
    "DriverRuntime",
    "DriverTestConfig",
    "DriverUnderTest",
    "DriverUnderTestState",
    "EmptyEnvironment",
    "EnvironmentType",
    "ForegroundDispatcher",
    "ForegroundDriverTest",
    "IncomingDirectory",
    "IncomingDirectoryServer",
    "LogSink",
    "OutgoingDirectoryClient",
    "Recorder",
    "RecordingTarget",
    "ReplayMismatch",
    "ReplayTarget",
    "ReplayedTrees",
    "StartArgsResult",
    "TestEnvironment",
    "TestNode",
    "current_dispatcher",
    "load_recording",
    "record",
    "replay",
    "serve",
    "unrecorded",
]
