"""Exporter config: the lab's YAML file, validated into typed models, and the tree it builds.

Theory of operation, in four passes; each problem found becomes a
:class:`~tether.exporter._problems.ConfigProblem` (file, line, key path, what was expected),
and a pass that found any raises them together as one ``ConfigFileError``:

1. ``compose`` (in ``_problems``) parses the YAML into plain data plus a table *key path ->
   line*, catching duplicate keys and syntax errors.
2. pydantic validates the shape (:class:`ExporterConfig`); its error locations are key paths,
   so each error maps to a line through the table.
3. ``_analyze`` checks what a schema cannot: node names, ``type`` imports to a ``Driver``
   subclass whose own config fields validate, ``ref`` and ``uses`` targets exist, no cycles.
   Its result (resolved classes, refs and uses) is cached on the config.
4. :func:`build_tree` makes a fresh driver tree from it, each call.

Node paths are dotted (``board.power``): node names cannot contain dots, so a path maps to
exactly one key path (``export.board.children.power``).
"""

from __future__ import annotations

import difflib
import importlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from tether.driver import Composite, Driver
from tether.extras import missing_extra

from ._config_models import (
    NAME_RE,
    NAME_RULE,
    ControllerConfig,
    ExporterConfig,
    HealthConfig,
    HooksConfig,
    NodeConfig,
    OnFailure,
    TLSConfig,
    TokensConfig,
)
from ._problems import (
    ConfigFileError,
    ConfigProblem,
    KeyPath,
    Reporter,
    compose,
    describe,
    fields_at,
    show,
    unknown_key,
)

__all__ = [
    "ConfigFileError",
    "ConfigProblem",
    "ControllerConfig",
    "ExporterConfig",
    "HealthConfig",
    "HooksConfig",
    "NodeConfig",
    "OnFailure",
    "TLSConfig",
    "TokensConfig",
    "build_tree",
    "load_config",
    "parse_config",
]


# -- analysis -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Analysis:
    nodes: dict[str, NodeConfig]  # declared dotted path -> node
    refs: dict[str, str]  # declared path of a ref node -> canonical (non-ref) target
    classes: dict[str, type[Driver]]  # canonical path -> driver class
    uses: dict[str, dict[str, str]]  # canonical path -> {instance: canonical provider path}

    def canonical(self, path: str) -> str:
        return self.refs.get(path, path)


class _Unresolved(Exception):
    """A ``ref``/``uses`` target or a ``type`` could not be resolved (message says why)."""


def _node_key(path: str) -> KeyPath:
    first, *rest = path.split(".")
    keys: list[str | int] = ["export", first]
    for part in rest:
        keys += ["children", part]
    return tuple(keys)


def _resolve(target: str, nodes: Mapping[str, NodeConfig], chain: tuple[str, ...]) -> str:
    """The canonical path of ``target``, following refs (also of its parent segments)."""
    current = ""
    for part in target.split("."):
        candidate = f"{current}.{part}" if current else part
        node = nodes.get(candidate)
        if node is None:
            message = f"expected the path of an exported node; there is no node {target!r}"
            close = difflib.get_close_matches(target, list(nodes), n=1)
            raise _Unresolved(message + (f"; did you mean {close[0]!r}?" if close else ""))
        if node.ref is not None:
            if candidate in chain:
                raise _Unresolved("ref cycle: " + " -> ".join((*chain, candidate)))
            candidate = _resolve(node.ref, nodes, (*chain, candidate))
        current = candidate
    return current


def _resolve_use(
    target: str, nodes: Mapping[str, NodeConfig], classes: Mapping[str, type[Driver]]
) -> tuple[str, type[Driver] | None]:
    """A ``uses:`` target: a node of the config, or a child its driver makes itself
    (``board.console`` of a QEMU board); its canonical path and driver class."""
    try:
        path = _resolve(target, nodes, ())
        return path, classes.get(path)
    except _Unresolved as unresolved:
        error = unresolved
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = _resolve(".".join(parts[:cut]), nodes, ())
        except _Unresolved:
            continue
        cls = classes.get(owner)
        if cls is None:
            break
        driver = _probe(cls, nodes[owner], ".".join(parts[:cut]))
        for depth, name in enumerate(parts[cut:]):
            children: Mapping[str, Driver] = getattr(driver, "children", None) or {}
            if name not in children:
                here = ".".join(parts[: cut + depth])
                made = ", ".join(sorted(children)) or "none"
                raise _Unresolved(
                    f"there is no node {target!r}: {here!r} ({type(driver).__qualname__}) "
                    f"has no child {name!r} (its children: {made})"
                )
            driver = children[name]
        return f"{owner}.{'.'.join(parts[cut:])}", type(driver)
    raise error


def _probe(cls: type[Driver], node: NodeConfig, path: str) -> Driver:
    """A throw-away instance of a node's driver, to see the children it makes."""
    try:
        return cls(**node.config)
    except Exception as exc:
        raise _Unresolved(
            f"cannot tell the children of {path!r}: creating {cls.__qualname__} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _import_driver(path: str) -> type[Driver]:
    parts = path.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise _Unresolved(
            f"expected a dotted class path such as tether.drivers.power.MockPower (got {path!r})"
        )
    missing: str | None = None
    obj: Any = None
    for end in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:end])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            name = exc.name or ""
            if name and (module_name == name or module_name.startswith(name + ".")):
                missing = missing or f"cannot import {path!r}: no module named {name!r}"
                continue
            raise _Unresolved(f"cannot import {path!r}: importing {module_name}: {exc}") from exc
        except Exception as exc:
            raise _Unresolved(
                f"cannot import {path!r}: importing {module_name} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for attr in parts[end:]:
            if not hasattr(obj, attr):
                raise _Unresolved(
                    missing or f"cannot import {path!r}: {module_name} has no attribute {attr!r}"
                )
            obj = getattr(obj, attr)
        break
    else:
        raise _Unresolved(missing or f"cannot import {path!r}")
    if obj is Driver:
        raise _Unresolved("expected a tether.Driver subclass, not the Driver base class itself")
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        # Not the class's __module__: that differs between Python versions (pathlib._local).
        kind = (
            "a class that does not subclass it"
            if isinstance(obj, type)
            else (f"a {type(obj).__name__}")
        )
        raise _Unresolved(f"expected a tether.Driver subclass; {path!r} is {kind}")
    return obj


def _check_driver_config(cls: type[Driver], node: NodeConfig, key: KeyPath, rep: Reporter) -> None:
    try:
        cls._config_model.model_validate(node.config)
    except pydantic.ValidationError as exc:
        owner = cls.__qualname__
        for err in exc.errors():
            path = (*key, "config", *err["loc"])
            if err["type"] == "extra_forbidden":
                field = str(err["loc"][-1])
                rep.add(path, unknown_key(field, cls._config_fields, f"config field of {owner}"))
            elif err["type"] == "missing":
                rep.add(path, f"required config field of {owner} is missing")
            else:
                rep.add(path, describe(err))


def _analyze(config: ExporterConfig, rep: Reporter) -> _Analysis:
    nodes: dict[str, NodeConfig] = {}

    def collect(children: Mapping[str, NodeConfig], prefix: str, key: KeyPath) -> None:
        for name, node in children.items():
            if not NAME_RE.match(name):
                rep.add((*key, name), f"invalid node name {name!r}: use {NAME_RULE}")
                continue
            path = f"{prefix}.{name}" if prefix else name
            nodes[path] = node
            collect(node.children, path, (*key, name, "children"))

    collect(config.export, "", ("export",))

    for path, node in nodes.items():
        key = _node_key(path)
        if node.ref is None and node.type is None:
            rep.add(
                (*key, "type"),
                "required key is missing: a node needs `type` (a tether.Driver class path) "
                "or `ref` (the path of another node)",
            )
        elif node.ref is not None and node.model_fields_set - {"ref"}:
            extra = sorted(node.model_fields_set - {"ref"})
            rep.add(
                (*key, extra[0]),
                f"a `ref` node takes no other keys (found: {', '.join(extra)}); "
                "it is the referenced node under a second name",
            )

    refs: dict[str, str] = {}
    cycles: set[frozenset[str]] = set()
    for path, node in nodes.items():
        if node.ref is None:
            continue
        try:
            refs[path] = _resolve(node.ref, nodes, (path,))
        except _Unresolved as exc:
            message = str(exc)
            if message.startswith("ref cycle: "):
                members = frozenset(message.removeprefix("ref cycle: ").split(" -> "))
                if members in cycles:
                    continue  # the same cycle, already reported at one of its members
                cycles.add(members)
            rep.add((*_node_key(path), "ref"), message)
    _check_containment(nodes, refs, rep)

    classes: dict[str, type[Driver]] = {}
    for path, node in nodes.items():
        if node.ref is not None or node.type is None:
            continue
        try:
            classes[path] = _import_driver(node.type)
        except _Unresolved as exc:
            rep.add((*_node_key(path), "type"), str(exc))
            continue
        missing = missing_extra(classes[path])
        if missing is not None:
            rep.add((*_node_key(path), "type"), str(missing))
        _check_driver_config(classes[path], node, _node_key(path), rep)

    uses: dict[str, dict[str, str]] = {}
    for path, node in nodes.items():
        if node.ref is not None or not node.uses:
            continue
        resolved: dict[str, str] = {}
        for instance, target in node.uses.items():
            key = (*_node_key(path), "uses", instance)
            if not NAME_RE.match(instance):
                rep.add(key, f"invalid instance name {instance!r}: use {NAME_RULE}")
                continue
            try:
                provider, provider_cls = _resolve_use(target, nodes, classes)
            except _Unresolved as exc:
                rep.add(key, str(exc))
                continue
            if provider == path:
                rep.add(key, "a node cannot use itself")
            elif provider_cls is not None and not provider_cls.interfaces():
                rep.add(
                    key,
                    f"{target!r} ({provider_cls.__qualname__}) offers no service: "
                    "its driver implements no tether.Interface",
                )
            else:
                resolved[instance] = provider
        uses[path] = resolved
    _check_uses_cycles(uses, rep)

    if config.health is not None:
        _check_health(config.health, nodes, classes, rep)
    if config.metrics_listen is not None:
        _check_host_port(config.metrics_listen, ("metrics_listen",), rep)
    for index, address in enumerate(config.listen):
        if address.scheme == "tls" and config.tls is None:
            rep.add(("listen", index), "a tls:// address needs a `tls:` section (cert and key)")
    return _Analysis(nodes, refs, classes, uses)


def _check_health(
    health: HealthConfig,
    nodes: Mapping[str, NodeConfig],
    classes: Mapping[str, type[Driver]],
    rep: Reporter,
) -> None:
    if (health.command is None) == (health.transition is None):
        rep.add(
            ("health",),
            "expected exactly one of `command` (a shell command) or `transition` (a state, "
            "with `node`: the BootStrategy node to transition)",
        )
    elif health.transition is not None and health.node is None:
        rep.add(("health", "transition"), "`transition` needs `node`: the node to transition")
    elif health.command is not None and health.node is not None:
        rep.add(("health", "node"), "`node` goes with `transition`, not with `command`")
    if health.node is None or health.transition is None:
        return
    try:
        target = _resolve(health.node, nodes, ())
    except _Unresolved as exc:
        rep.add(("health", "node"), str(exc))
        return
    cls = classes.get(target)
    if cls is not None and not callable(getattr(cls, "transition", None)):
        rep.add(
            ("health", "node"),
            f"{health.node!r} ({cls.__qualname__}) has no `transition` method "
            "(expected a BootStrategy such as tether.drivers.strategy.BootStrategy)",
        )


def _check_host_port(value: str, key: KeyPath, rep: Reporter) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        rep.add(key, f"expected HOST:PORT such as 127.0.0.1:9464 (got {value!r})")


def _check_containment(
    nodes: Mapping[str, NodeConfig], refs: Mapping[str, str], rep: Reporter
) -> None:
    """A ref to a node that contains the ref would make the tree infinite."""
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(path: str) -> None:
        state[path] = 1
        for name in nodes[path].children:
            child = f"{path}.{name}"
            if child not in nodes or (nodes[child].ref is not None and child not in refs):
                continue
            target = refs.get(child, child)
            if state.get(target) == 1:
                rep.add(
                    (*_node_key(child), "ref"),
                    f"ref cycle: {child!r} refers to {target!r}, which contains it",
                )
            elif target not in state:
                visit(target)
        state[path] = 2

    for path in nodes:
        if "." not in path and path not in state and nodes[path].ref is None:
            visit(path)


def _check_uses_cycles(uses: Mapping[str, Mapping[str, str]], rep: Reporter) -> None:
    state: dict[str, int] = {}

    def visit(path: str, chain: tuple[str, ...]) -> None:
        state[path] = 1
        for instance, provider in uses.get(path, {}).items():
            if state.get(provider) == 1:
                cycle = (*chain[chain.index(provider) :], provider)
                rep.add(
                    (*_node_key(path), "uses", instance),
                    f"uses cycle: {' -> '.join(cycle)} (a driver cannot depend on itself)",
                )
            elif provider not in state:
                visit(provider, (*chain, provider))
        state[path] = 2

    for path in uses:
        if path not in state:
            visit(path, (path,))


# -- entry points ---------------------------------------------------------------------------


def load_config(path: str | Path) -> ExporterConfig:
    """Read and validate an exporter config file.

    Relative paths in it (``tls``, ``token_file``) are relative to the file's directory.

    Args:
        path: the YAML file.

    Returns:
        The validated config; driver classes are imported and their config fields checked.

    Raises:
        ConfigFileError: the file is invalid (every problem, each with file, line, key path
            and what was expected), or cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot read the config file ({exc})")
        raise ConfigFileError([problem]) from exc
    return parse_config(text, str(path), base_dir=path.parent)


def parse_config(
    text: str, filename: str = "<string>", *, base_dir: str | Path | None = None
) -> ExporterConfig:
    """Validate an exporter config given as YAML text.

    Args:
        text: the YAML.
        filename: the name used in error messages.
        base_dir: what relative paths are relative to (default: the current directory).

    Returns:
        The validated config.

    Raises:
        ConfigFileError: the config is invalid.
    """
    lines: dict[KeyPath, int] = {}
    rep = Reporter(filename, lines)
    data = compose(text, rep, lines)
    rep.raise_if_any()
    if not isinstance(data, dict):
        expected = "expected a mapping with at least `name` and `export`"
        message = (
            f"the file is empty; {expected}" if data is None else f"{expected} (got {show(data)})"
        )
        rep.problems.append(ConfigProblem(filename, lines.get((), 1), "", message))
        rep.raise_if_any()
    base = Path(base_dir if base_dir is not None else Path.cwd()).absolute()
    try:
        config = ExporterConfig.model_validate(data, context={"base_dir": base})
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if isinstance(data.get("tokens"), list) and loc[:2] == ("tokens", "hashes"):
                loc = ("tokens", *loc[2:])  # reported as written: a plain list
            if err["type"] == "extra_forbidden":
                rep.add(loc, unknown_key(str(loc[-1]), fields_at(ExporterConfig, loc[:-1])))
            else:
                rep.add(loc, describe(err))
        rep.raise_if_any()
        raise  # pragma: no cover - a ValidationError always has errors
    config._source = filename
    config._lines = lines
    config._analysis = _analyze(config, rep)
    rep.raise_if_any()
    return config


def _analysis_of(config: ExporterConfig) -> _Analysis:
    if config._analysis is None:
        rep = Reporter(config.source, config._lines)
        analysis = _analyze(config, rep)
        rep.raise_if_any()
        config._analysis = analysis
    return typing.cast(_Analysis, config._analysis)


def build_tree(config: ExporterConfig) -> tuple[Driver, dict[str, dict[str, str]]]:
    """Instantiate a fresh driver tree for one session.

    A node listed under two names (``ref``) is one driver object in two places.

    Args:
        config: a validated config.

    Returns:
        ``(root, uses)``: ``root`` is a :class:`~tether.driver.Composite` holding
        the exported nodes as children (labelled with the exporter's labels); ``uses`` maps
        each node path (every path a shared node appears under) to ``{instance: provider
        path}``, the format :class:`~tether.driver.DriverHost` takes.

    Raises:
        ConfigFileError: the config is invalid, or a driver's constructor raised.
    """
    analysis = _analysis_of(config)
    built: dict[str, Driver] = {}
    rep = Reporter(config.source, config._lines)

    def make(path: str) -> Driver:
        if path in built:
            return built[path]
        node = analysis.nodes[path]
        children = {name: make(analysis.canonical(f"{path}.{name}")) for name in node.children}
        cls = analysis.classes[path]
        try:
            driver = cls(
                children=children, description=node.description, labels=node.labels, **node.config
            )
        except Exception as exc:
            rep.add((*_node_key(path), "type"), f"{node.type} could not be created: {exc}")
            raise ConfigFileError(rep.problems) from exc
        built[path] = driver
        return driver

    exported = {name: make(analysis.canonical(name)) for name in config.export}
    root = Composite(children=exported, labels=config.labels)

    uses: dict[str, dict[str, str]] = {}

    def walk(tree_path: str, canonical: str) -> None:
        if analysis.uses.get(canonical):
            uses[tree_path] = dict(analysis.uses[canonical])
        for name in analysis.nodes[canonical].children:
            walk(f"{tree_path}.{name}", analysis.canonical(f"{canonical}.{name}"))

    for name in config.export:
        walk(name, analysis.canonical(name))
    return root, uses
