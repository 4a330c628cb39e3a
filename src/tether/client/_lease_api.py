"""The controller's lease API from the client side: settings (options, env, the client file),
the :class:`Lease` record and :class:`LeaseClient`, the HTTP calls a lease is made of."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError, ControllerError, LeaseEnded, LeaseExpired
from tether.http_errors import controller_error, map_http_errors
from tether.security import client_ssl_context

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_CONFIG",
    "ClientSettings",
    "Lease",
    "LeaseClient",
    "lease_ended",
    "load_client_settings",
]

#: Where ``tether`` looks for the client config when neither options nor env vars say.
DEFAULT_CONFIG = Path("~/.config/tether/client.yaml")
#: Seconds each lease long-poll may wait at the controller.
_LONG_POLL = 30.0


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSettings:
    """Where the controller is and who we are: ``endpoint``, ``token``, ``ca``."""

    endpoint: str
    token: str = field(repr=False)
    ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the controller's and its relay's certificates (``ca`` or the system's)."""
        return client_ssl_context(self.ca)


def load_client_settings(
    controller: str | None = None,
    token: str | None = None,
    ca: str | Path | None = None,
    config: str | Path | None = None,
) -> ClientSettings:
    """Resolve the client settings: arguments first, then ``TETHER_CONTROLLER``,
    ``TETHER_TOKEN`` and ``TETHER_CA``, then the client config file (``config``, else
    ``TETHER_CONFIG``, else ``~/.config/tether/client.yaml``), as printed by
    ``tether admin create-client`` (``endpoint``, ``token``, ``ca``).

    Raises:
        ConfigError: the config file is unreadable or malformed, or no controller URL or no
            token was found anywhere.
    """
    env = os.environ
    values: dict[str, Any] = {
        "endpoint": controller or env.get("TETHER_CONTROLLER") or None,
        "token": token or env.get("TETHER_TOKEN") or None,
        "ca": ca or env.get("TETHER_CA") or None,
    }
    explicit = config or env.get("TETHER_CONFIG") or None
    path = Path(explicit if explicit is not None else DEFAULT_CONFIG).expanduser()
    if any(v is None for v in values.values()) and (explicit is not None or path.exists()):
        for key, value in _read_client_file(path).items():
            if values.get(key) is None:
                values[key] = value
    names = {"endpoint": "controller URL", "token": "token"}
    missing = [name for key, name in names.items() if not values[key]]
    if missing:
        raise ConfigError(
            f"no {' and no '.join(missing)} for the controller: pass controller=/token= "
            "(--controller/--token), set TETHER_CONTROLLER/TETHER_TOKEN, or write the config "
            f"printed by `tether admin create-client` to {path}"
        )
    ca_path = Path(values["ca"]).expanduser() if values["ca"] else None
    return ClientSettings(str(values["endpoint"]).rstrip("/"), str(values["token"]), ca_path)


def _read_client_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the client config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with endpoint, token and ca")
    unknown = sorted(set(data) - {"endpoint", "token", "ca", "allow"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (expected endpoint, token, ca, allow)")
    result: dict[str, Any] = {}
    for key in ("endpoint", "token", "ca"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a string (got {value!r})")
        if value:
            result[key] = value
    if "ca" in result and not Path(result["ca"]).expanduser().is_absolute():
        result["ca"] = str(path.parent / result["ca"])
    return result


# -- the controller's lease API ---------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """A lease as the controller reports it (``docs/controller-api.md``)."""

    id: str
    state: str
    client: str = ""
    exporters: tuple[str, ...] = ()
    position: int | None = None
    #: Why a pending lease waits, when its only matching exporters are out of the pool.
    waiting: str | None = None
    relay: str | None = None
    ends_at: str | None = None
    reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        return cls(
            id=str(data["id"]),
            state=str(data["state"]),
            client=str(data.get("client", "")),
            exporters=tuple(data.get("exporters") or ()),
            position=data.get("position"),
            waiting=data.get("waiting"),
            relay=data.get("relay"),
            ends_at=data.get("ends_at"),
            reason=data.get("reason"),
            raw=data,
        )


def lease_ended(lease: Lease) -> LeaseEnded | None:
    """Why ``lease`` is over, as an error to raise, or ``None`` while it is pending or ready.

    The one wording of a lease's end ("the lease L expired at T", "the lease L was revoked:
    REASON"), for calls through it, ``dut`` and ``tether shell`` alike.
    """
    if lease.state in ("pending", "ready"):
        return None
    when = lease.raw.get("ended_at") or lease.ends_at
    cls: type[LeaseEnded]
    if lease.state == "expired":
        cls, message = LeaseExpired, f"the lease {lease.id} expired at {when}"
    else:
        why = f": {lease.reason}" if lease.reason else ""
        cls, message = LeaseEnded, f"the lease {lease.id} was {lease.state}{why}"
    return cls(message, lease_id=lease.id, state=lease.state, ended_at=when, reason=lease.reason)


class LeaseClient:
    """The controller's lease endpoints, blocking (``httpx``). A context manager.

    Raises (every method):
        ConnectFailed: the controller cannot be reached.
        AuthenticationFailed: the token is unknown.
        ControllerError: the controller refused (``code``: ``bad_selector``, ``forbidden``...).
    """

    def __init__(self, settings: ClientSettings) -> None:
        import httpx  # lazily: `import tether` stays light

        self.settings = settings
        self._http: httpx.Client = httpx.Client(
            base_url=settings.endpoint,
            headers={"Authorization": f"Bearer {settings.token}"},
            verify=settings.ssl_context() if settings.endpoint.startswith("https") else True,
            timeout=httpx.Timeout(10.0, read=_LONG_POLL + 10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LeaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        what = f"{method} {self.settings.endpoint}{path}"
        with map_http_errors(what):
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise controller_error(response, what)
        body = response.json()
        return body if isinstance(body, dict) else {}

    def request(
        self,
        selector: str | None = None,
        duration: str | float = "30m",
        *,
        exporter: str | None = None,
        selectors: Sequence[str] | None = None,
    ) -> Lease:
        """Ask for a lease of one exporter matching ``selector`` (or the exporter named), or
        of one exporter per entry of ``selectors``, granted together (``lease.exporters`` in
        the same order)."""
        body: dict[str, Any] = {"duration": duration}
        if exporter is not None:
            body["exporter"] = exporter
        if selector is not None:
            body["selector"] = selector
        if selectors is not None:
            body["selectors"] = list(selectors)
        return Lease.from_json(self._request("POST", "/v1/leases", json=body))

    def get(
        self,
        lease_id: str,
        *,
        wait: float = 0.0,
        state: str | None = None,
        hooks: int | None = None,
    ) -> Lease:
        """The lease; with ``wait``, once its state differs from ``state`` (or its position
        moved, or with ``hooks`` its ``hooks_version`` passed that), or after ``wait`` s."""
        params: dict[str, Any] = {}
        if wait:
            params = {"wait": wait, **({"state": state} if state else {})}
            if hooks is not None:
                params["hooks"] = hooks
        return Lease.from_json(self._request("GET", f"/v1/leases/{lease_id}", params=params))

    def wait_ready(self, lease: Lease, on_wait: Callable[[Lease], None] | None = None) -> Lease:
        """Long-poll until the lease is no longer pending.

        Raises:
            ControllerError: the lease is unsatisfiable, ended or expired (``code`` says which).
        """
        while lease.state == "pending":
            if on_wait is not None:
                on_wait(lease)
            lease = self.get(lease.id, wait=_LONG_POLL, state="pending")
        if lease.state != "ready":
            raise ControllerError(
                f"lease {lease.id} is {lease.state}: {lease.reason or 'no reason given'}",
                code=lease.state,
                status=409,
            )
        return lease

    def leases(self, *, all: bool = False) -> list[Lease]:
        """The caller's leases (``all``: with the last ended ones)."""
        params = {"all": "true"} if all else {}
        body = self._request("GET", "/v1/leases", params=params)
        return [Lease.from_json(item) for item in body.get("leases", [])]

    def release(self, lease_id: str) -> Lease:
        """End the lease (leaves the queue when pending); idempotent."""
        return Lease.from_json(self._request("DELETE", f"/v1/leases/{lease_id}"))

    def extend(self, lease_id: str, duration: str | float) -> Lease:
        """Move the lease's end later by ``duration``."""
        body = {"duration": duration}
        return Lease.from_json(self._request("POST", f"/v1/leases/{lease_id}/extend", json=body))

    def exporters(self, selector: str | None = None) -> list[dict[str, Any]]:
        """Every exporter (matching ``selector``): name, labels, status, lease, last_seen."""
        params = {"selector": selector} if selector else {}
        found = self._request("GET", "/v1/exporters", params=params).get("exporters", [])
        return [item for item in found if isinstance(item, dict)]

    def queue(self, limit: int = 1000) -> tuple[list[Lease], int]:
        """The whole lab's waiting requests in serving order (first ``limit``), and how many
        wait in all."""
        answer = self._request("GET", "/v1/queue", params={"limit": limit})
        waiting = [Lease.from_json(item) for item in answer.get("leases", [])]
        return waiting, int(answer.get("total", len(waiting)))
