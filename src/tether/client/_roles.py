"""Leases with roles: several exporters granted together, one client tree per role.

Theory of operation. ``tether.lease(roles={"dut": "board=rpi4", "host": "kind=x86"})`` posts
one lease request with one selector per role (``selectors`` in ``POST /v1/leases``); the
controller grants all of them together or none. ``lease.exporters`` comes back in the order
of the selectors, which maps each role to its exporter. Each role's tree then dials the relay
naming its exporter (``RelayHello.exporter``), so the router splices it to that exporter's
dial and no other.

A shell or ``dut`` learns the roles from the environment: ``TETHER_ROLES`` lists the role
names (comma-separated, in request order) and ``TETHER_HOST_<ROLE>`` (the name upper-cased)
holds each role's address; ``TETHER_HOST`` is the first role's, so a plain ``dut`` drives it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tether.errors import AuthenticationFailed, ConfigError, ConnectFailed, ControllerError
from tether.wire import parse_address

__all__ = [
    "ROLES_VAR",
    "Lab",
    "lease_roles",
    "parse_roles",
    "role_environment",
    "role_host_var",
]

#: The environment variable listing a shell's roles, comma-separated.
ROLES_VAR = "TETHER_ROLES"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"lease", "roles", "close", "items", "session_urls"})


def role_host_var(role: str) -> str:
    """The environment variable holding ``role``'s address: ``TETHER_HOST_<ROLE>``."""
    return f"TETHER_HOST_{role.upper()}"


def check_roles(roles: Mapping[str, str]) -> dict[str, str]:
    """Validate role names (identifiers, distinct ignoring case, not a ``Lab`` attribute).

    Raises:
        ConfigError: no roles, a bad or reserved name, or an empty selector.
    """
    if not roles:
        raise ConfigError("roles: give at least one NAME=SELECTOR")
    seen: dict[str, str] = {}
    for name, selector in roles.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"role {name!r}: a role name is a Python identifier (dut, host_1)")
        if name in _RESERVED:
            raise ConfigError(
                f"role {name!r}: the name is reserved ({', '.join(sorted(_RESERVED))})"
            )
        if name.upper() in seen:
            raise ConfigError(f"roles {seen[name.upper()]!r} and {name!r} differ only in case")
        if not isinstance(selector, str) or not selector.strip():
            raise ConfigError(f"role {name!r}: empty selector")
        seen[name.upper()] = name
    return dict(roles)


def parse_roles(items: Sequence[str]) -> dict[str, str]:
    """``["dut=board=rpi4", "host=kind=x86"]`` (the CLI's ``--role NAME=SELECTOR``) → mapping.

    Raises:
        ConfigError: an item without ``=``, a role given twice, or a bad name.
    """
    roles: dict[str, str] = {}
    for item in items:
        name, sep, selector = item.partition("=")
        if not sep:
            raise ConfigError(f"--role {item!r}: expected NAME=SELECTOR (dut=board=rpi4)")
        if name in roles:
            raise ConfigError(f"--role {name}: given twice")
        roles[name] = selector
    return check_roles(roles)


class Lab:
    """The client trees of a lease with roles: ``lab.dut``, ``lab["host"]``.

    Attributes:
        lease: the :class:`~tether.client.Lease` (one lease for every role).
        roles: role name → client tree, in request order.
        exporters: role name → the exporter granted for it.
    """

    def __init__(self, lease: Any, roles: dict[str, Any], exporters: dict[str, str]) -> None:
        self.lease = lease
        self.roles = roles
        self.exporters = exporters

    def __getattr__(self, name: str) -> Any:
        roles = self.__dict__.get("roles", {})
        if name in roles:
            return roles[name]
        raise AttributeError(f"lab has no role {name!r} (roles: {', '.join(roles) or 'none'})")

    def __getitem__(self, name: str) -> Any:
        try:
            return self.roles[name]
        except KeyError:
            raise KeyError(f"no role {name!r} (roles: {', '.join(self.roles)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.roles)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.roles})

    def items(self) -> list[tuple[str, Any]]:
        """``(role, tree)`` pairs in request order."""
        return list(self.roles.items())

    def session_urls(self) -> dict[str, str]:
        """Role → address ``tether.connect`` (and ``dut``) can join (with a relay proxy)."""
        return {name: tree.session_url for name, tree in self.roles.items()}

    def __repr__(self) -> str:
        pairs = ", ".join(f"{r}={e}" for r, e in self.exporters.items())
        return f"<Lab lease {self.lease.id}: {pairs}>"


def role_environment(lab: Lab) -> dict[str, str]:
    """``TETHER_ROLES``, ``TETHER_HOST_<ROLE>`` and ``TETHER_HOST`` (first role) for a shell."""
    urls = lab.session_urls()
    env = {ROLES_VAR: ",".join(urls)}
    env.update({role_host_var(name): url for name, url in urls.items()})
    env["TETHER_HOST"] = next(iter(urls.values()))
    return env


@contextlib.contextmanager
def lease_roles(
    roles: Mapping[str, str],
    duration: str | float = "30m",
    *,
    controller: str | None = None,
    token: str | None = None,
    ca: str | Path | None = None,
    config: str | Path | None = None,
    allow: Sequence[str] = (),
    unsafe: bool = False,
    keepalive: float | None = 10.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    on_wait: Callable[[Any], None] | None = None,
    relay_proxy: bool = False,
) -> Iterator[Lab]:
    """One lease for every role, one client tree per role (see :func:`tether.lease`).

    Args:
        roles: role name → selector, e.g. ``{"dut": "board=rpi4", "host": "kind=x86"}``.
        relay_proxy: give each tree a local unix socket (``tree.session_url``) that ``dut``
            can join, as ``tether shell`` needs.
        others: as in :func:`tether.lease`.
    """
    from ._lease import (
        LeaseClient,
        LeasedSession,
        _spinner_callback,
        _tree,
        load_client_settings,
    )
    from ._relay_proxy import RelayProxy

    wanted = check_roles(roles)
    settings = load_client_settings(controller, token, ca, config)
    with LeaseClient(settings) as api:
        granted = api.request(None, duration, selectors=list(wanted.values()))
        try:
            spinner, update = _spinner_callback(progress)
            with spinner:

                def waiting(pending: Any) -> None:
                    update(pending)
                    if on_wait is not None:
                        on_wait(pending)

                granted = api.wait_ready(granted, waiting)
            if len(granted.exporters) != len(wanted):
                raise ControllerError(
                    f"lease {granted.id}: {len(wanted)} roles asked, "
                    f"{len(granted.exporters)} exporter(s) granted",
                    code="bad_grant",
                    status=500,
                )
            exporters = dict(zip(wanted, granted.exporters, strict=True))
            with contextlib.ExitStack() as stack:
                trees: dict[str, Any] = {}
                for role, exporter in exporters.items():
                    tree = _tree(
                        granted,
                        settings,
                        allow=allow,
                        unsafe=unsafe,
                        keepalive=keepalive,
                        timeout=timeout,
                        exporter=exporter,
                    )
                    stack.callback(tree.close)
                    if relay_proxy:
                        session = tree.session
                        assert isinstance(session, LeasedSession)
                        proxy = stack.enter_context(RelayProxy(session))
                        session.address = parse_address(proxy.url)
                    trees[role] = tree
                yield Lab(granted, trees, exporters)
        finally:
            with contextlib.suppress(ConnectFailed, ControllerError, AuthenticationFailed):
                api.release(granted.id)
