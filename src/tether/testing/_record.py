"""Record a client tree's session and replay it without the device.

Theory of operation. Every :class:`~tether.driver.DriverClient` calls through its session, a
``CallTarget`` (``call``, ``streaming_call``, ``open_stream``). :class:`Recorder` swaps each
node's target for a :class:`RecordingTarget` that passes every call on and notes it: the call,
its result or error, the items a streaming call yielded, the bytes a byte stream sent and
received. Nothing in the wire protocol changes; the seam is the client's connection.

:func:`replay` builds the same client tree from the recorded report over a
:class:`ReplayTarget`, which answers each call from the recording, in order; a call that
differs from the next recorded one raises :class:`ReplayMismatch` naming what was expected.

File format (JSON Lines, UTF-8, one object a line):

* ``{"tether_record": 1, "test": ID}`` first;
* ``{"tree": NAME, "report": [...]}`` for each recorded tree (``dut``, or one per role);
* one line per operation, in the order the operations started: ``{"tree", "op", "node",
  "path", "method", "args", "kwargs"}`` plus, for ``op`` ``call``, ``result`` or ``error``;
  for ``streaming``, ``items``, ``end`` (``done``, ``closed`` or ``error``) and ``error``;
  for ``stream``, ``events``: ``["send", DATA]``, ``["recv", DATA]``, ``["eof"]``.

Values are JSON; ``bytes`` are ``{"$bytes": BASE64}``. An ``error`` is ``{"type": NAME,
"message": TEXT, "details": {...}}``, ``NAME`` an exception of :mod:`tether.errors`.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pydantic_core

import tether.errors as errors_module
from tether.driver import ByteStream, CallTarget, ClientPolicy, DriverClient, build_client_tree
from tether.errors import CallError, TetherError

__all__ = [
    "RECORD_VERSION",
    "Recorder",
    "RecordingTarget",
    "ReplayMismatch",
    "ReplayTarget",
    "ReplayedTrees",
    "load_recording",
    "record",
    "replay",
    "unrecorded",
]

RECORD_VERSION = 1
_PAUSED = contextvars.ContextVar("tether_unrecorded", default=False)


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
    """Calls made inside the block (in this thread or task) are not recorded: what a test
    harness does around a test (fetching console logs) is not part of the test's session."""
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


class ReplayMismatch(TetherError, AssertionError):
    """A replayed session did something the recording did not (or in another order)."""


# -- values -----------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """``value`` as JSON data; bytes become ``{"$bytes": BASE64}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return encode_value(pydantic_core.to_jsonable_python(value, fallback=repr))


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def _encode_error(exc: BaseException) -> dict[str, Any]:
    details = encode_value(exc.details) if isinstance(exc, CallError) else {}
    message = exc.message if isinstance(exc, CallError) else str(exc)
    name = type(exc).__name__ if isinstance(exc, TetherError) else type(exc).__qualname__
    return {"type": name, "message": message, "details": details}


def _decode_error(data: dict[str, Any]) -> BaseException:
    cls = getattr(errors_module, str(data.get("type")), None)
    message = str(data.get("message", ""))
    details = decode_value(data.get("details") or {})
    if isinstance(cls, type) and issubclass(cls, CallError):
        return cls(message, **details)
    if isinstance(cls, type) and issubclass(cls, TetherError):
        with contextlib.suppress(TypeError):
            return cls(message)
    return TetherError(f"{data.get('type')}: {message}")


def _report(root: DriverClient) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for _, client in root.walk():
        seen.setdefault(f"{client.uuid}:{client.report.get('path')}", client.report)
    return [encode_value(entry) for entry in seen.values()]


def _paths(root: DriverClient) -> dict[str, str]:
    out: dict[str, str] = {}

    def visit(client: DriverClient, path: str) -> None:
        out.setdefault(client.uuid, path or "(root)")
        for name, child in client.children.items():
            visit(child, f"{path}.{name}" if path else name)

    visit(root, "")
    return out


def _describe(entry: dict[str, Any]) -> str:
    args = [json.dumps(a) for a in entry.get("args", [])]
    args += [f"{k}={json.dumps(v)}" for k, v in entry.get("kwargs", {}).items()]
    kind = {"call": "", "streaming": " (streaming)", "stream": " (byte stream)"}
    return f"{entry.get('path')}.{entry.get('method')}({', '.join(args)}){kind[entry['op']]}"


# -- recording --------------------------------------------------------------------------------


class Recorder:
    """Notes what client trees do; :meth:`attach` a tree, :meth:`start` and :meth:`stop` per
    recording (a tree may stay attached across several, as a session-wide ``dut`` does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[str, list[dict[str, Any]]] = {}
        self._entries: list[dict[str, Any]] | None = None
        self._test = ""
        self._active: set[str] = set()

    def attach(self, root: DriverClient, name: str = "dut") -> DriverClient:
        """Record ``root``'s calls (every node's) under ``name``; returns ``root``."""
        paths = _paths(root)
        for _, client in root.walk():
            target = client._target
            if isinstance(target, RecordingTarget):
                target = target.inner
            client._target = RecordingTarget(target, self, name, paths)
        self._trees[name] = _report(root)
        return root

    def start(self, test: str = "", trees: Iterable[str] | None = None) -> None:
        """Begin a recording of the attached trees (of those named in ``trees``)."""
        with self._lock:
            self._entries = []
            self._test = test
            self._active = set(self._trees if trees is None else trees)

    def stop(self, path: str | Path) -> Path:
        """End the recording and write it to ``path``; returns the path."""
        with self._lock:
            entries, self._entries = self._entries or [], None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [{"tether_record": RECORD_VERSION, "test": self._test}]
        lines += [
            {"tree": name, "report": report}
            for name, report in self._trees.items()
            if name in self._active
        ]
        lines += entries
        path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        return path

    def note(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Append an entry to the running recording (None when none runs)."""
        with self._lock:
            if self._entries is None or entry.get("tree") not in self._active:
                return None
            self._entries.append(entry)
            return entry


class RecordingTarget:
    """A ``CallTarget`` passing calls to ``inner`` and noting them in a :class:`Recorder`."""

    def __init__(
        self, inner: CallTarget, recorder: Recorder, tree: str, paths: dict[str, str]
    ) -> None:
        self.inner = inner
        self.recorder = recorder
        self.tree = tree
        self.paths = paths

    def _entry(
        self, op: str, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        if _PAUSED.get():
            return None
        return self.recorder.note(
            {
                "tree": self.tree,
                "op": op,
                "node": node,
                "path": self.paths.get(node, node),
                "method": method,
                "args": encode_value(args),
                "kwargs": encode_value(kwargs),
            }
        )

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        entry = self._entry("call", node, method, args, kwargs)
        try:
            result = self.inner.call(node, method, args, kwargs)
        except Exception as exc:
            if entry is not None:
                entry["error"] = _encode_error(exc)
            raise
        if entry is not None:
            entry["result"] = encode_value(result)
        return result

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        entry = self._entry("streaming", node, method, args, kwargs)
        items: list[Any] = []
        if entry is not None:
            entry["items"], entry["end"] = items, "closed"
        try:
            for item in self.inner.streaming_call(node, method, args, kwargs):
                items.append(encode_value(item))
                yield item
        except GeneratorExit:
            raise
        except Exception as exc:
            if entry is not None:
                entry["end"], entry["error"] = "error", _encode_error(exc)
            raise
        if entry is not None:
            entry["end"] = "done"

    @contextlib.contextmanager
    def _stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[ByteStream]:
        entry = self._entry("stream", node, method, args, kwargs)
        events: list[list[Any]] = []
        if entry is not None:
            entry["events"] = events
        with self.inner.open_stream(node, method, args, kwargs) as stream:
            yield _RecordingStream(stream, events)

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractContextManager[ByteStream]:
        return self._stream(node, method, args, kwargs)

    def __getattr__(self, name: str) -> Any:  # server_meta, close...: the session's own
        return getattr(self.inner, name)


class _RecordingStream:
    def __init__(self, inner: ByteStream, events: list[list[Any]]) -> None:
        self.inner = inner
        self.events = events

    def send(self, data: bytes) -> None:
        self.inner.send(data)
        self.events.append(["send", encode_value(bytes(data))])

    def receive(self) -> bytes:
        data = self.inner.receive()
        self.events.append(["recv", encode_value(data)])
        return data

    def send_eof(self) -> None:
        self.inner.send_eof()
        self.events.append(["eof"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def record(root: DriverClient, path: str | Path, *, name: str = "dut") -> Iterator[DriverClient]:
    """Record what is done with ``root`` inside the block to ``path`` (see the module doc)."""
    recorder = Recorder()
    recorder.attach(root, name)
    recorder.start(str(path))
    try:
        yield root
    finally:
        recorder.stop(path)


# -- replaying --------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, entries: list[dict[str, Any]], path: Path) -> None:
        self.entries = entries
        self.index = 0
        self.path = path
        self.lock = threading.Lock()
        self.failed = False  # a mismatch was raised: the end-of-replay check stays quiet

    def take(
        self, tree: str, op: str, path: str, method: str, args: Any, kwargs: Any
    ) -> dict[str, Any]:
        asked = {"op": op, "path": path, "method": method, "args": args, "kwargs": kwargs}
        with self.lock:
            if self.index >= len(self.entries):
                self.failed = True
                raise ReplayMismatch(
                    f"{self.path}: the recording has no more operations; "
                    f"the replay called {_describe(asked)}"
                )
            entry = self.entries[self.index]
            number = self.index + 1
            wanted = {k: entry.get(k) for k in ("op", "path", "method", "args", "kwargs")}
            if entry.get("tree") != tree or wanted != asked:
                self.failed = True
                raise ReplayMismatch(
                    f"{self.path}: operation {number}: expected "
                    f"{entry.get('tree')}: {_describe(entry)}, got {tree}: {_describe(asked)}"
                )
            self.index += 1
            return entry


class ReplayTarget:
    """A ``CallTarget`` answering from a recording (shared cursor across a file's trees)."""

    def __init__(self, cursor: _Cursor, tree: str, paths: dict[str, str]) -> None:
        self.cursor = cursor
        self.tree = tree
        self.paths = paths

    def _take(
        self, op: str, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        path = self.paths.get(node, node)
        return self.cursor.take(
            self.tree, op, path, method, encode_value(args), encode_value(kwargs)
        )

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        entry = self._take("call", node, method, args, kwargs)
        if "error" in entry:
            raise _decode_error(entry["error"])
        return decode_value(entry.get("result"))

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        entry = self._take("streaming", node, method, args, kwargs)
        for item in entry.get("items", []):
            yield decode_value(item)
        if entry.get("end") == "error":
            raise _decode_error(entry.get("error") or {})

    @contextlib.contextmanager
    def _stream(self, entry: dict[str, Any]) -> Iterator[ByteStream]:
        yield _ReplayStream(entry, self.cursor.path)

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractContextManager[ByteStream]:
        return self._stream(self._take("stream", node, method, args, kwargs))

    def close(self) -> None:
        """Nothing to close (the recording is in memory)."""


class _ReplayStream:
    def __init__(self, entry: dict[str, Any], path: Path) -> None:
        events = entry.get("events", [])
        self.sent = [e for e in events if e[0] in ("send", "eof")]
        self.received = [decode_value(e[1]) for e in events if e[0] == "recv"]
        self.where = f"{path}: {_describe(entry)}"

    def send(self, data: bytes) -> None:
        self._expect(["send", encode_value(bytes(data))])

    def send_eof(self) -> None:
        self._expect(["eof"])

    def _expect(self, event: list[Any]) -> None:
        if not self.sent or self.sent[0] != event:
            wanted = self.sent[0] if self.sent else "nothing more"
            raise ReplayMismatch(f"{self.where}: expected to send {wanted}, got {event}")
        self.sent.pop(0)

    def receive(self) -> bytes:
        if not self.received:
            raise ReplayMismatch(f"{self.where}: the recording received nothing more")
        data = self.received.pop(0)
        return bytes(data)


class ReplayedTrees:
    """The trees of a recording with several (one per role): ``trees.dut``, ``trees["host"]``."""

    def __init__(self, trees: dict[str, DriverClient]) -> None:
        self.roles = trees

    def __getattr__(self, name: str) -> DriverClient:
        roles = self.__dict__.get("roles", {})
        if name in roles:
            return roles[name]  # type: ignore[no-any-return]
        raise AttributeError(f"the recording has no tree {name!r} (trees: {', '.join(roles)})")

    def __getitem__(self, name: str) -> DriverClient:
        return self.roles[name]


def load_recording(path: str | Path) -> tuple[dict[str, Any], dict[str, list[Any]], list[Any]]:
    """``(header, reports by tree, operations)`` of a recording file.

    Raises:
        ConfigError: the file is unreadable or not a tether recording.
    """
    from tether.errors import ConfigError

    path = Path(path)
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recording: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a tether recording (bad JSON: {exc})") from exc
    if not lines or not isinstance(lines[0], dict) or "tether_record" not in lines[0]:
        raise ConfigError(f"{path}: not a tether recording (no tether_record header)")
    if lines[0]["tether_record"] != RECORD_VERSION:
        raise ConfigError(f"{path}: recording version {lines[0]['tether_record']} unknown")
    reports = {line["tree"]: line["report"] for line in lines[1:] if "report" in line}
    operations = [line for line in lines[1:] if "op" in line]
    return lines[0], reports, operations


@contextlib.contextmanager
def replay(path: str | Path, *, strict: bool = True) -> Iterator[Any]:
    """A client tree answering as recorded in ``path`` (``pytest --tether-record DIR``).

    Yields the tree when the file recorded one (``dut``), a :class:`ReplayedTrees` when it
    recorded several (one per role). Client classes are imported freely (the recording is
    trusted input, as a test's own file).

    Args:
        strict: at the end of the block, raise :class:`ReplayMismatch` when recorded
            operations were left unreplayed.

    Raises:
        ConfigError: not a readable recording.
        ReplayMismatch: a call differs from the recorded one (the message names both).
    """
    path = Path(path)
    _, reports, operations = load_recording(path)
    cursor = _Cursor(operations, path)
    trees: dict[str, DriverClient] = {}
    for name, report in reports.items():
        entries = decode_value(report)
        paths = {e["uuid"]: "" for e in entries}
        target = ReplayTarget(cursor, name, paths)
        root = build_client_tree(entries, target, ClientPolicy(unsafe=True))
        paths.update(_paths(root))
        trees[name] = root
    yield next(iter(trees.values())) if len(trees) == 1 else ReplayedTrees(trees)
    if strict and not cursor.failed and cursor.index < len(operations):
        left = operations[cursor.index]
        raise ReplayMismatch(
            f"{path}: {len(operations) - cursor.index} recorded operation(s) not replayed, "
            f"next: {_describe(left)}"
        )
