"""The web dashboard at ``/``: the lab at a glance, live, with admin actions.

Server-rendered (Jinja2 templates in ``templates/``, autoescaped: every label, name and reason
comes from someone else), no build step and no script from anywhere but this page. An open
overview subscribes to ``/events`` (server-sent events): each event carries the rows that
changed, rendered here, and the page swaps them in place (:mod:`._dashboard_live`); the
events follow the change notifications that wake the API's long-polls (across PostgreSQL
replicas too).

Sign-in: ``/login`` takes a client or admin token in the form field ``token`` and keeps it in
an HttpOnly, Secure, SameSite=Strict cookie; tokens never appear in a URL. Forms that change
anything carry a CSRF field derived from the token (a page on another site can neither read
it nor send the cookie) and are refused without it. The overview has one such form, ``#act``:
every admin button submits it with its own ``formaction`` (a form a row cost Chromium more to
parse than the rest of the page).
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from tether.errors import ControllerError

from ._controller import Controller
from ._dashboard_live import OverviewFeed, overview_stream
from ._records import Identity, LeaseState, iso

__all__ = ["COOKIE", "install_dashboard"]

COOKIE = "tether_session"
_ROWS = 100  # exporters and queued requests on the first screen; the rest with ?all=1
_RECENT = 50  # the overview's finished leases (the page keeps as many)
_MAX_FORM = 16 * 1024


def install_dashboard(app: FastAPI, controller: Controller) -> None:
    """Add the dashboard's pages, its event stream and its admin forms to ``app``."""
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("tether.controller", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["iso"] = _when

    async def who(request: Request) -> tuple[Identity, str] | None:
        token = request.cookies.get(COOKIE, "")
        if not token:
            return None
        identity = await controller.identify(token)
        return None if identity is None else (identity, token)

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**context), status_code=status)

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    async def overview_context(request: Request, identity: Identity, token: str) -> dict[str, Any]:
        views = controller.store.views
        show_all = request.query_params.get("all") == "1"
        limit = None if show_all else _ROWS
        found = await controller.run_read(views.exporters, None, limit)
        queue, queued = await controller.run_read(views.queue, limit)
        leases = await controller.run_read(views.leases, _RECENT)
        counts = await controller.run_read(views.counts)
        return {
            "me": identity,
            "csrf": csrf_for(token),
            "exporters": found,
            "exporter_total": sum(counts.exporters.values()),
            "status_counts": [(s, n) for s, n in counts.exporters.items() if n],
            "queue": queue,
            "queue_total": queued,
            "live_total": counts.leases[LeaseState.READY.value],
            "live": [lease for lease in leases if lease.state is LeaseState.READY],
            "recent": [lease for lease in leases if lease.state is not LeaseState.READY],
            "show_all": show_all,
            "recent_limit": _RECENT,
        }

    @app.get("/", include_in_schema=False)
    async def overview(request: Request) -> Response:
        found = await who(request)
        if found is None:
            return to_login()
        context = await overview_context(request, *found)
        return page("overview.html", **context)

    @app.get("/fragments/overview", include_in_schema=False)
    async def overview_fragment(request: Request) -> Response:
        found = await who(request)
        if found is None:
            return HTMLResponse("", status_code=401)
        context = await overview_context(request, *found)
        return page("_lab.html", **context)

    @app.get("/leases/{lease_id}", include_in_schema=False)
    async def lease_page(request: Request, lease_id: str) -> Response:
        found = await who(request)
        if found is None:
            return to_login()
        lease = await controller.run_read(controller.store.get_lease, lease_id)
        if lease is None:
            return page("message.html", 404, me=found[0], title="No such lease", text=lease_id)
        history = await controller.run_read(controller.admin.lease_history, lease_id)
        return page(
            "lease.html", me=found[0], csrf=csrf_for(found[1]), lease=lease, history=history
        )

    @app.get("/login", include_in_schema=False)
    async def login_form() -> Response:
        return page("login.html", me=None, error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        token = (await _form(request)).get("token", "").strip()
        identity = await controller.identify(token) if token else None
        if identity is None or identity.kind == "exporter":
            error = "That token is not a client or admin token of this lab."
            return page("login.html", 401, me=None, error=error)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        found = await who(request)
        if found is not None:
            check_csrf(found[1], (await _form(request)).get("csrf", ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def admin_form(request: Request) -> tuple[Identity, dict[str, str]]:
        # Who first, then the body: nobody signed out makes the controller read a form.
        found = await who(request)
        if found is None:
            raise ControllerError("sign in first", code="unauthorized", status=401)
        fields = await _form(request)
        check_csrf(found[1], fields.get("csrf", ""))
        if found[0].kind != "admin":
            raise ControllerError("this needs an admin token", code="forbidden", status=403)
        return found[0], fields

    @app.post("/admin/leases/{lease_id}/end", include_in_schema=False)
    async def end_lease_form(request: Request, lease_id: str) -> Response:
        admin, _fields = await admin_form(request)
        await controller.end_lease(admin, lease_id, _address(request))
        return RedirectResponse(_back(request), status_code=303)

    @app.post("/admin/exporters/{name}/maintenance", include_in_schema=False)
    async def maintenance_form(request: Request, name: str) -> Response:
        admin, fields = await admin_form(request)
        reason = fields.get("reason", "").strip()[:500]
        on = fields.get("on", "on") == "on"
        why = (reason or f"set by {admin.name} from the dashboard") if on else None
        await controller.set_maintenance(
            admin, name, why, end_lease=fields.get("end_lease") == "on", address=_address(request)
        )
        return RedirectResponse(_back(request), status_code=303)

    @app.get("/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        found = await who(request)
        if found is None:
            return HTMLResponse("", status_code=401)
        rows = templates.get_template("_rows.html").make_module({"me": found[0]})
        limit = None if request.query_params.get("all") == "1" else _ROWS
        return StreamingResponse(
            overview_stream(controller, OverviewFeed(controller, rows, limit)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body, read up to :data:`_MAX_FORM` bytes (refused beyond)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise ControllerError("form too large", code="too_large", status=413)
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    return {key: values[0] for key, values in fields.items()}


def _when(timestamp: float | None) -> str:
    """A time as people read it on a lab page: to the second, UTC."""
    text = iso(timestamp)
    return "" if text is None else text[:19].replace("T", " ") + "Z"


def csrf_for(token: str) -> str:
    """The CSRF field of forms signed in with ``token`` (useless without the token)."""
    return hmac.new(token.encode(), b"tether-dashboard-csrf", hashlib.sha256).hexdigest()[:32]


def check_csrf(token: str, given: str) -> None:
    """Refuse a form whose CSRF field does not belong to the signed-in token."""
    if not hmac.compare_digest(csrf_for(token), given):
        raise ControllerError(
            "this form is stale or came from another site: reload the page",
            code="forbidden",
            status=403,
        )


def _back(request: Request) -> str:
    # Only a path on this site: an open redirect would be a gift.
    target = request.query_params.get("back", "/")
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None
