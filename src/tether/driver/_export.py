"""``@export`` / ``@export_stream`` and the per-method call machinery built from them.

For every exported method the class keeps an :class:`ExportedMethod`: its kind (unary,
streaming, byte stream), whether it is async, and a validator per parameter built from the
type hints with pydantic. The wire layer calls :meth:`ExportedMethod.bind` before a driver
method runs, so a driver never sees an argument its signature does not allow.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import reprlib
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import pydantic

from tether.errors import InvalidArgument

from ._interface import interface_methods, interfaces_of

__all__ = [
    "ExportedMethod",
    "MethodKind",
    "export",
    "export_stream",
    "exported_methods",
    "interface_exports",
    "known_result_type",
]

F = TypeVar("F", bound=collections.abc.Callable[..., Any])
_MARK = "__tether_export__"
_CACHE = "__tether_exported_methods__"


class MethodKind(Enum):
    UNARY = "unary"
    STREAMING = "streaming"
    BYTE_STREAM = "byte_stream"


def export(fn: F) -> F:
    """Make a driver method callable by clients.

    A coroutine function or plain function is a unary call (plain functions run in a worker
    thread); an (async) generator function is a streaming call whose items reach the client
    one by one.
    """
    setattr(fn, _MARK, MethodKind.UNARY)
    return fn


def export_stream(fn: F) -> F:
    """Export an ``@asynccontextmanager`` method that yields a byte stream.

    The yielded object needs ``async send(data)``, ``async receive() -> bytes`` (``b""`` at
    EOF) and optionally ``async send_eof()``; anyio and tether streams both qualify.
    """
    setattr(fn, _MARK, MethodKind.BYTE_STREAM)
    return fn


_SIMPLE = {int, float, str, bool, bytes, type(None)}


@dataclass(frozen=True, slots=True)
class ExportedMethod:
    """What the call machinery knows about one exported method."""

    name: str
    kind: MethodKind
    is_async: bool
    signature: inspect.Signature
    doc: str
    validators: dict[str, pydantic.TypeAdapter[Any]]
    item_type: Any
    takes_no_arguments: bool
    #: dotted path of the class a call returns (or a stream yields), when the client can
    #: rebuild it (a pydantic model or a dataclass); else None
    result_type: str | None = None

    def bind(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Check and convert arguments; raise InvalidArgument naming the bad parameter.

        Returns:
            ``(args, kwargs)`` to call the method with.
        """
        if self.takes_no_arguments and not args and not kwargs:
            return (), {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            parameter = _parameter_named_in(str(exc), [*self.signature.parameters, *kwargs])
            raise InvalidArgument(f"{self.name}(): {exc}", parameter=parameter) from None
        arguments = bound.arguments
        for name, value in arguments.items():
            validator = self.validators.get(name)
            if validator is None:
                continue
            try:
                arguments[name] = validator.validate_python(value)
            except pydantic.ValidationError as exc:
                detail = "; ".join(err["msg"] for err in exc.errors())
                raise InvalidArgument(
                    f"{self.name}(): argument {name!r}: {detail} (got {_short_repr(value)})",
                    parameter=name,
                ) from None
        return bound.args, bound.kwargs

    def describe(self) -> dict[str, Any]:
        """The report entry for this method (shown by ``dut`` and generic clients)."""
        params = []
        for param in self.signature.parameters.values():
            entry: dict[str, Any] = {"name": param.name, "kind": param.kind.name.lower()}
            if param.annotation is not inspect.Parameter.empty:
                entry["type"] = _type_name(param.annotation)
                choices = _choices(param.annotation)
                if choices is not None:
                    entry["choices"] = choices
            if param.default is not inspect.Parameter.empty:
                default = param.default
                entry["default"] = default if type(default) in _SIMPLE else repr(default)
            params.append(entry)
        entry = {
            "kind": self.kind.value,
            "params": params,
            "doc": self.doc,
            "signature": f"{self.name}{self.signature}",
        }
        if self.result_type is not None:
            entry["returns"] = self.result_type
        return entry


class _ShortRepr(reprlib.Repr):
    """Reprs of at most a few hundred characters, built without the whole one (a bad
    argument of 300 kB costs no 1.2 MB string per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 200
        self.maxlist = self.maxtuple = self.maxset = self.maxdict = 4

    def repr_bytes(self, value: bytes, level: int) -> str:
        if len(value) <= 32:
            return repr(value)
        return f"{value[:32]!r}... [{len(value)} bytes]"

    repr_bytearray = repr_bytes


_short_repr = _ShortRepr().repr


def _parameter_named_in(message: str, names: list[str]) -> str | None:
    for name in names:
        if f"'{name}'" in message:
            return name
    return None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _choices(annotation: Any) -> list[Any] | None:
    """The allowed values of an Enum or Literal annotation (for ``dut --help``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [member.value for member in annotation]
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return None


def exported_methods(cls: type) -> dict[str, ExportedMethod]:
    """All exported methods of a driver class, built once per class and cached on it.

    Exported are the methods marked ``@export`` / ``@export_stream`` and every method an
    interface of the class declares (the interface is the export list). An interface method's
    kind comes from the driver's own mark, else from the interface's (``export_stream`` there
    makes a byte stream), else from its shape (an (async) generator streams).

    Raises:
        TypeError: the class leaves an interface method unimplemented (unless the class was
            defined with ``abstract=True``), naming the interface and the method.
    """
    cached = cls.__dict__.get(_CACHE)
    if cached is not None:
        return typing.cast(dict[str, ExportedMethod], cached)
    methods: dict[str, ExportedMethod] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        fn = inspect.getattr_static(cls, name, None)
        kind = getattr(fn, _MARK, None)
        if isinstance(kind, MethodKind) and callable(fn):
            methods[name] = _build(name, fn, kind)
    missing: list[str] = []
    for interface in interfaces_of(cls):
        for name in sorted(interface_methods(interface)):
            if name in methods:
                continue
            fn = inspect.getattr_static(cls, name, None)
            if fn is None or not callable(fn):
                missing.append(f"{interface.__qualname__}.{name}")
                continue
            if getattr(fn, "__isabstractmethod__", False):
                missing.append(f"{interface.__qualname__}.{name}")
                continue
            methods[name] = _build(name, fn, _interface_kind(interface, name))
    if missing and not cls.__dict__.get("__tether_abstract__", False):
        raise TypeError(
            f"{cls.__qualname__} does not implement {', '.join(missing)}; implement "
            f"{'it' if len(missing) == 1 else 'them'}, or define the class with "
            f"abstract=True (class {cls.__name__}(..., abstract=True)) to leave "
            f"{'it' if len(missing) == 1 else 'them'} to subclasses"
        )
    setattr(cls, _CACHE, methods)
    return methods


def interface_exports(interface: type) -> dict[str, ExportedMethod]:
    """The call table an interface's own declarations give (for services without a driver).

    Built once per interface class and cached on it.
    """
    cached = interface.__dict__.get(_INTERFACE_CACHE)
    if cached is not None:
        return typing.cast(dict[str, ExportedMethod], cached)
    methods: dict[str, ExportedMethod] = {}
    for name in sorted(interface_methods(interface)):
        fn = inspect.getattr_static(interface, name)
        methods[name] = _build(name, fn, _interface_kind(interface, name))
    setattr(interface, _INTERFACE_CACHE, methods)
    return methods


_INTERFACE_CACHE = "__tether_interface_exports__"


def _interface_kind(interface: type, name: str) -> MethodKind:
    """The kind an interface's declaration gives a method the driver does not mark."""
    for base in interface.__mro__:
        declared = base.__dict__.get(name)
        if declared is None:
            continue
        kind = getattr(declared, _MARK, None)
        if isinstance(kind, MethodKind):
            return kind
        target = inspect.unwrap(declared)
        if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
            return MethodKind.STREAMING
        return MethodKind.UNARY
    return MethodKind.UNARY


def _build(name: str, fn: collections.abc.Callable[..., Any], kind: MethodKind) -> ExportedMethod:
    target = inspect.unwrap(fn)
    signature = inspect.signature(target)
    parameters = list(signature.parameters.values())[1:]  # drop self
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:  # unresolvable forward references are a driver bug: say which
        raise TypeError(f"cannot resolve type hints of {target.__qualname__}: {exc}") from exc
    validators: dict[str, pydantic.TypeAdapter[Any]] = {}
    clean: list[inspect.Parameter] = []
    for param in parameters:
        annotation = hints.get(param.name, inspect.Parameter.empty)
        clean.append(param.replace(annotation=annotation))
        if annotation is inspect.Parameter.empty or annotation is Any:
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            annotation = tuple[annotation, ...]  # type: ignore[valid-type]
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            annotation = dict[str, annotation]  # type: ignore[valid-type]
        validators[param.name] = pydantic.TypeAdapter(annotation)
    returns = hints.get("return", inspect.Parameter.empty)
    if kind is MethodKind.UNARY and (
        inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target)
    ):
        kind = MethodKind.STREAMING
    is_async = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
    if kind is MethodKind.BYTE_STREAM:
        is_async = True
    return ExportedMethod(
        name=name,
        kind=kind,
        is_async=is_async,
        signature=signature.replace(parameters=clean, return_annotation=returns),
        doc=inspect.getdoc(target) or "",
        validators=validators,
        item_type=_item_type(returns) if kind is MethodKind.STREAMING else None,
        takes_no_arguments=not clean,
        result_type=_result_type(_item_type(returns) if kind is MethodKind.STREAMING else returns),
    )


#: Result classes of every exported method defined in this process, by dotted path: a client
#: in the same process finds them here (classes defined inside functions cannot be imported).
_RESULT_TYPES: dict[str, type] = {}


def _result_type(returns: Any) -> str | None:
    if not isinstance(returns, type):
        return None
    if not (issubclass(returns, pydantic.BaseModel) or dataclasses.is_dataclass(returns)):
        return None
    path = f"{returns.__module__}.{returns.__qualname__}"
    _RESULT_TYPES[path] = returns
    return path


def known_result_type(path: str) -> type | None:
    """The result class named ``path``: one defined in this process, else imported.

    Only call this for paths the caller trusts (the client's allow-list): importing runs the
    module's code. Returns None when the class cannot be found or is not a model/dataclass.
    """
    cls = _RESULT_TYPES.get(path)
    if cls is not None:
        return cls
    module_name, _, qualname = path.rpartition(".")
    while module_name:
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError:
            qualname = f"{module_name.rpartition('.')[2]}.{qualname}"
            module_name = module_name.rpartition(".")[0]
            continue
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if isinstance(found, type) and (
            issubclass(found, pydantic.BaseModel) or dataclasses.is_dataclass(found)
        ):
            return found
        return None
    return None


def _item_type(returns: Any) -> Any:
    origin = typing.get_origin(returns)
    if origin in (
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
        collections.abc.Iterator,
        collections.abc.Iterable,
        collections.abc.Generator,
    ):
        args = typing.get_args(returns)
        return args[0] if args else Any
    return Any
