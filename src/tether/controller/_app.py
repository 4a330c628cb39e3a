"""The HTTP API (FastAPI): routes, bearer auth, and one translation of errors to JSON.

Every error answer is ``{"error": code, "message": ..., **details}`` (docs/controller-api.md):
:class:`~tether.errors.ControllerError` carries its code and status; body validation errors
become ``invalid_request`` (422) listing each bad field; unknown routes ``not_found``.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures at run
time, and they use aliases local to :func:`create_app`.)
"""

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.errors import ControllerError

from . import _audit as audit_log
from ._controller import Controller, lease_version
from ._limits import GuardMiddleware, Limits
from ._metrics import ControllerMetrics, RequestTimer
from ._records import Identity, LeaseRecord
from ._scheduler import Slot
from ._selector import (
    MAX_DURATION,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_SELECTOR,
    MIN_DURATION,
    Selector,
    label_problem,
    parse_duration,
    parse_selector,
)

__all__ = ["create_app"]

_MAX_WAIT = 60.0
_MAX_SLOTS = 64

Duration = Annotated[
    StrictInt | StrictFloat | StrictStr,
    Field(
        description=(
            f"seconds (a number, at least {MIN_DURATION:g}), or text: a number with units "
            "d, h, m, s from largest to smallest, each at most once ('90s', '30m', '1h30m', "
            f"'2d'); at most {MAX_DURATION / 86400:g} days"
        ),
        examples=["30m", 1800],
    ),
]
Selector_ = Annotated[
    str,
    Field(
        max_length=MAX_SELECTOR,
        description=(
            "requirements joined by ',' (all must hold): KEY=VALUE, KEY!=VALUE, "
            "KEY in (V1, V2), KEY notin (V1, V2), KEY (exists), !KEY (absent); keys and "
            "values of letters, digits, '-', '_', '.', '/', ':'. Empty: every exporter."
        ),
        examples=["board=rpi4,site in (lab-a, lab-b)"],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeaseRequest(_Body):
    """Ask for exporters: one ``selector`` (``count`` times), several ``selectors``, or one
    ``exporter`` by name. Several exporters are granted together or not at all."""

    selector: Selector_ | None = None
    count: StrictInt = Field(1, ge=1, le=_MAX_SLOTS)
    selectors: list[Selector_] | None = Field(None, min_length=1, max_length=_MAX_SLOTS)
    exporter: str | None = Field(None, max_length=200)
    duration: Duration

    @model_validator(mode="after")
    def _one_kind(self) -> "LeaseRequest":
        given = [n for n in ("selector", "selectors", "exporter") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'selector', 'selectors' or 'exporter' "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.count != 1 and self.selector is None:
            raise ValueError("'count' goes with 'selector' only")
        return self


class ExtendRequest(_Body):
    """Move a ready lease's end later by ``duration``."""

    duration: Duration


class RegisterRequest(_Body):
    """An exporter announcing itself: its own labels (under the admin's) and driver report.

    Reported labels are shown and matched by lease selectors, never by access policies
    (those match only the labels the admin gave the exporter)."""

    labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            f"at most {MAX_LABELS}; keys (up to {MAX_LABEL_KEY} characters) and values (up to "
            f"{MAX_LABEL_VALUE}) of letters, digits, '-', '_', '.', '/', ':'"
        ),
    )
    report: Any = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        problem = label_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class EndRequest(_Body):
    """Why the exporter ends the lease (shown to its client)."""

    reason: str = Field("the exporter ended the lease", max_length=2000)


class HeartbeatRequest(_Body):
    """``hook`` while a before/after-lease hook runs (the exporter is not granted meanwhile);
    ``offline`` when the exporter shuts down (offline at once, not after the time-out)."""

    status: Literal["available", "hook", "offline"] = "available"


class MaintenanceRequest(_Body):
    """``on``: out of the pool with ``reason``; off: back in. ``end_lease`` ends its live
    lease now (otherwise the lease runs to its end and no new one is granted)."""

    on: bool
    reason: str | None = Field(None, max_length=500)
    end_lease: bool = False


class HealthRequest(_Body):
    """The outcome of an exporter's health check and the tail of its output."""

    ok: bool
    output: str = Field("", max_length=8000)


class HookReport(_Body):
    """A hook of one of the exporter's leases: running (with its output so far) or done."""

    hook: Literal["before_lease", "after_lease"]
    state: Literal["running", "ok", "failed"]
    output: str = Field("", max_length=8000)
    status: int | None = None


class LeaseOut(BaseModel):
    """A lease (docs/controller-api.md, "Lease object")."""

    id: str
    client: str
    state: Literal["pending", "ready", "ended", "expired", "unsatisfiable"]
    requests: list[dict[str, str | None]]
    duration: float
    priority: int
    position: int | None
    waiting: str | None = None
    exporters: list[str]
    created_at: str | None
    granted_at: str | None
    ends_at: str | None
    ended_at: str | None
    reason: str | None
    relay: str | None
    hooks: list[dict[str, Any]] = []
    hooks_version: int = 0


class LeaseList(BaseModel):
    """The caller's leases."""

    leases: list[LeaseOut]


class ErrorOut(BaseModel):
    """Every error answer."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a lone surrogate in stored or echoed text
    (an exporter's label, a selector) is still a valid answer, never a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 408, 409, 413, 422, 429, 503)
}


def create_app(controller: Controller, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving ``controller`` (kept as ``app.state.controller``).

    Every ``/v1/`` request is authenticated, and its body bounded, by
    :class:`~._limits.GuardMiddleware` before a route sees it.
    """
    app = FastAPI(
        title="tether controller",
        version="1",
        description="Leases, exporters and access for a tether lab. See docs/controller-api.md.",
        responses=_ERRORS,
        default_response_class=AsciiJSONResponse,
    )
    app.state.controller = controller
    _install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware,
        identify=controller.identify,
        known=controller.store.known_token,
        failed=controller.note_auth_failure,
        limits=limits or Limits(),
    )

    async def identity(request: Request) -> Identity:
        address = request.client.host if request.client else "unknown"
        checked = getattr(request.state, "identity", None)
        if isinstance(checked, Identity):  # the guard middleware authenticated it
            audit_log.act_as(checked.name, address)
            return checked
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ControllerError(
                "missing bearer token: send 'Authorization: Bearer <token>'",
                code="unauthorized",
                status=401,
            )
        found = await controller.identify(token.strip())
        if found is None:
            await controller.note_auth_failure(address)
            raise ControllerError("unknown or revoked token", code="unauthorized", status=401)
        audit_log.act_as(found.name, address)
        return found

    def kind(wanted: str) -> Callable[[Identity], Awaitable[Identity]]:
        async def check(who: Annotated[Identity, Depends(identity)]) -> Identity:
            if who.kind != wanted:
                raise ControllerError(
                    f"this needs {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} token; "
                    f"{who.name!r} is {'an' if who.kind[0] in 'aeiou' else 'a'} {who.kind}",
                    code="forbidden",
                    status=403,
                )
            return who

        return check

    Client = Annotated[Identity, Depends(kind("client"))]
    Exporter = Annotated[Identity, Depends(kind("exporter"))]
    Admin = Annotated[Identity, Depends(kind("admin"))]
    Anyone = Annotated[Identity, Depends(identity)]
    Agent = Annotated[
        str | None,
        Header(
            alias="Tether-Agent",
            max_length=64,
            description="the agent process's id (random, per process): one agent an exporter",
        ),
    ]
    Wait = Annotated[float, Query(ge=0, le=_MAX_WAIT, description="long-poll seconds")]

    def lease_json(lease: LeaseRecord) -> dict[str, Any]:
        return lease.to_json(controller.relay_url)

    def seen(lease: LeaseRecord) -> dict[str, Any]:
        # Its client reads it: a pending request is still wanted, a granted one claimed.
        controller.note_seen_by_client(lease)
        return lease_json(lease)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers without touching the database."""
        return {"status": "ok"}

    @app.get("/v1/whoami", tags=["service"])
    async def whoami(who: Annotated[Identity, Depends(identity)]) -> dict[str, str]:
        """The identity behind the token."""
        return {"kind": who.kind, "name": who.name}

    @app.post("/v1/leases", status_code=201, response_model=LeaseOut, tags=["leases"])
    async def create_lease(body: LeaseRequest, who: Client) -> dict[str, Any]:
        """Queue a lease request; it may be granted at once, or be unsatisfiable."""
        seconds = parse_duration(body.duration)
        if body.exporter is not None:
            slots = [Slot(exporter=body.exporter)]
        elif body.selectors is not None:
            slots = [Slot(selector=_selector(s, "selectors")) for s in body.selectors]
        else:
            slots = [Slot(selector=_selector(body.selector or "", "selector"))] * body.count
        lease, changes = await controller.run_db(
            controller.store.create_lease, who.name, slots, seconds
        )
        await controller.apply(changes)
        return seen(lease)

    @app.get("/v1/leases", response_model=LeaseList, tags=["leases"])
    async def list_leases(who: Client, all: bool = False) -> dict[str, Any]:
        """The caller's live leases (``all=true``: also its last 100 finished ones)."""
        found = await controller.run_read(controller.store.list_leases, who.name, include_ended=all)
        return {"leases": [seen(lease) for lease in found]}

    @app.get("/v1/leases/{lease_id}", response_model=LeaseOut, tags=["leases"])
    async def get_lease(
        lease_id: str,
        who: Client,
        wait: Wait = 0.0,
        state: str | None = None,
        hooks: Annotated[
            int | None, Query(ge=0, description="also answer once hooks_version passes this")
        ] = None,
    ) -> dict[str, Any]:
        """One lease; with ``wait``, answers once its state is no longer ``state`` (or, with
        ``hooks``, once an exporter hook reported past that ``hooks_version``)."""
        lease = await controller.wait_lease(
            lease_id, state if wait > 0 else None, wait, hooks=hooks if wait > 0 else None
        )
        return seen(_mine(lease, lease_id, who))

    @app.post("/v1/leases/{lease_id}/extend", response_model=LeaseOut, tags=["leases"])
    async def extend_lease(lease_id: str, body: ExtendRequest, who: Client) -> dict[str, Any]:
        """Move a ready lease's end later."""
        seconds = parse_duration(body.duration)
        lease, changes = await controller.run_db(
            controller.store.extend, who.name, lease_id, seconds
        )
        await controller.apply(changes)
        return lease_json(lease)

    @app.delete("/v1/leases/{lease_id}", response_model=LeaseOut, tags=["leases"])
    async def release_lease(lease_id: str, who: Client) -> dict[str, Any]:
        """End a lease (a pending one leaves the queue); idempotent on finished leases."""
        lease, changes = await controller.run_db(controller.store.release, who.name, lease_id)
        await controller.apply(changes)
        return lease_json(lease)

    @app.get("/v1/exporters", tags=["exporters"])
    async def list_exporters(
        _who: Anyone,
        selector: Annotated[
            str | None,
            Query(max_length=MAX_SELECTOR, description="a label selector, as in a lease request"),
        ] = None,
    ) -> dict[str, Any]:
        """Every exporter (matching ``selector``) with its status and holder."""
        parsed = None if selector is None else _selector(selector, "selector")
        found = await controller.run_read(controller.store.list_exporters, parsed)
        refused = controller.agents_refused
        return {
            "exporters": [{**e.to_json(), "agents_refused": refused.get(e.name, 0)} for e in found]
        }

    @app.get("/v1/queue", tags=["leases"])
    async def queue(
        _who: Anyone, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> dict[str, Any]:
        """The whole lab's waiting requests in the order they will be served."""
        waiting, total = await controller.run_read(controller.store.views.queue, limit)
        return {"total": total, "leases": [lease_json(lease) for lease in waiting]}

    @app.get("/v1/admin/audit", tags=["admin"])
    async def audit(
        _who: Admin,
        since: Annotated[float | None, Query(description="seconds since the epoch")] = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        """Audit entries from ``since`` on, oldest first."""
        entries = await controller.run_read(
            controller.admin.audit, since=since, action=action, limit=limit
        )
        return {"entries": [entry.to_json() for entry in entries]}

    @app.post("/v1/admin/exporters/{name}/maintenance", tags=["admin"])
    async def maintenance(name: str, body: MaintenanceRequest, who: Admin) -> dict[str, Any]:
        """Take an exporter out of the pool, or put it back."""
        reason = (body.reason or f"set by {who.name}") if body.on else None
        ended = await controller.set_maintenance(who, name, reason, end_lease=body.end_lease)
        return {"name": name, "maintenance": reason, "ended_leases": ended}

    @app.post("/v1/admin/leases/{lease_id}/end", response_model=LeaseOut, tags=["admin"])
    async def end_lease(lease_id: str, who: Admin) -> dict[str, Any]:
        """End anyone's lease (a pending one leaves the queue)."""
        return lease_json(await controller.end_lease(who, lease_id))

    @app.post("/v1/exporter/health", tags=["exporter"])
    async def health(body: HealthRequest, who: Exporter) -> dict[str, Any]:
        """An exporter reports its health check; a failure keeps it from being granted."""
        await controller.set_health(who.name, None if body.ok else body.output or "failed")
        return {"name": who.name, "healthy": body.ok}

    metrics: ControllerMetrics | None = None
    with contextlib.suppress(ImportError):
        metrics = ControllerMetrics(controller)
        app.add_middleware(RequestTimer, metrics=metrics)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def scrape() -> Response:
        """Prometheus text: leases, queue, exporters, grants, wait and lease durations, API
        latency (docs/dashboard.md lists every metric)."""
        if metrics is None:
            raise ControllerError(
                "metrics need prometheus-client: pip install 'tether[controller]'",
                code="not_available",
                status=501,
            )
        return Response(await metrics.scrape(), media_type=metrics.content_type)

    try:
        from ._dashboard import install_dashboard  # needs jinja2 (tether[controller])
    except ImportError:
        pass
    else:
        install_dashboard(app, controller)

    @app.post("/v1/exporter/register", tags=["exporter"])
    async def register(body: RegisterRequest, who: Exporter, agent: Agent = None) -> dict[str, Any]:
        """An exporter announces its labels and driver report.

        With a ``Tether-Agent`` header, a second agent for an exporter whose agent is live is
        refused (409 ``agent_conflict``); once it registers (the first silent for the heartbeat
        time-out, or gone offline), the first is fenced (409 ``agent_fenced`` on its calls).
        """
        labels = await controller.register(who.name, body.labels, body.report, agent)
        current = await controller.run_db(controller.store.exporter_leases, who.name)
        return {
            "name": who.name,
            "labels": labels,
            "heartbeat_interval": controller.heartbeat_interval,
            "heartbeat_timeout": controller.heartbeat_timeout,
            "leases": [lease.to_exporter_json(controller.relay_url) for lease in current],
        }

    @app.post("/v1/exporter/heartbeat", tags=["exporter"], response_model=dict[str, Any])
    async def heartbeat(body: HeartbeatRequest, who: Exporter, agent: Agent = None) -> Response:
        """An exporter is alive (or says it goes away); the answer lists its live leases."""
        if body.status == "offline":
            current = await controller.exporter_offline(who.name, agent)
        else:
            current = await controller.exporter_heartbeat(who.name, body.status == "hook", agent)
        # The hottest route (every exporter, every interval): the answer is plain JSON
        # already, so it skips FastAPI's response-model validation and encoding pass.
        return AsciiJSONResponse(
            {
                "leases": [lease.to_exporter_json(controller.relay_url) for lease in current],
                "version": lease_version(current),
                "heartbeat_interval": controller.heartbeat_interval,
            }
        )

    @app.get("/v1/exporter/leases", tags=["exporter"])
    async def exporter_leases(
        who: Exporter, wait: Wait = 0.0, version: str | None = None, agent: Agent = None
    ) -> dict[str, Any]:
        """The exporter's live leases; with ``wait``, once they differ from ``version``."""
        await controller.verify_agent(who.name, agent)
        current, tag = await controller.wait_exporter_leases(who.name, version, wait)
        return {
            "leases": [lease.to_exporter_json(controller.relay_url) for lease in current],
            "version": tag,
        }

    @app.post("/v1/exporter/leases/{lease_id}/end", response_model=LeaseOut, tags=["exporter"])
    async def exporter_end_lease(
        lease_id: str, body: EndRequest, who: Exporter, agent: Agent = None
    ) -> dict[str, Any]:
        """The exporter cannot serve one of its leases (``before_lease`` failed with
        ``on_failure: end_lease``): it ends now, and its client sees ``reason`` at once."""
        await controller.verify_agent(who.name, agent)
        lease, changes = await controller.run_db(
            controller.store.end_by_exporter, who.name, lease_id, body.reason
        )
        await controller.apply(changes)
        return lease_json(lease)

    @app.post("/v1/exporter/leases/{lease_id}/hooks", tags=["exporter"])
    async def exporter_hook(
        lease_id: str, body: HookReport, who: Exporter, agent: Agent = None
    ) -> dict[str, Any]:
        """A hook of one of the exporter's leases runs (its output so far) or finished; kept
        with the lease (``hooks`` in the lease object) and shown to its client."""
        await controller.verify_agent(who.name, agent)
        lease, changes = await controller.run_db(
            controller.store.record_hook, who.name, lease_id, body.model_dump()
        )
        await controller.apply(changes)
        return {"id": lease.id, "hooks_version": lease.hooks_version}

    return app


def _selector(text: str, field: str) -> Selector:
    try:
        return parse_selector(text)
    except ControllerError as exc:
        exc.details["field"] = field
        raise


def _mine(lease: LeaseRecord | None, lease_id: str, who: Identity) -> LeaseRecord:
    if lease is None:
        raise ControllerError(f"no lease {lease_id!r}", code="not_found", status=404)
    if lease.client != who.name:
        raise ControllerError(
            f"lease {lease_id} belongs to another client", code="forbidden", status=403
        )
    return lease


def _install_error_handlers(app: FastAPI) -> None:
    async def controller_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ControllerError)
        body = {"error": exc.code, "message": exc.message, **exc.details}
        return AsciiJSONResponse(body, status_code=exc.status)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append({"where": where, "message": error.get("msg", "invalid")})
        text = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        return AsciiJSONResponse(
            {"error": "invalid_request", "message": f"invalid request: {text}", "errors": problems},
            status_code=422,
        )

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return AsciiJSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code
        )

    app.add_exception_handler(ControllerError, controller_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
