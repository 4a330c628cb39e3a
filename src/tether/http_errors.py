"""The controller's HTTP answers as tether errors, for everything that talks to the controller
(the lease client, the exporter's agent): a low module beside :mod:`tether.errors` that both
import, so the exporter (layer 4) never imports the client (layer 5).

Two boundaries, each translated once: httpx's transport errors become
:class:`~tether.errors.ConnectFailed` (:func:`map_http_errors`), and a 4xx/5xx answer with the
controller's JSON body (``error``, ``message``) becomes :class:`~tether.errors.ControllerError`
or, for 401, :class:`~tether.errors.AuthenticationFailed` (:func:`controller_error`).
httpx is imported only when used: ``import tether`` stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tether.errors import AuthenticationFailed, ConnectFailed, ControllerError

if TYPE_CHECKING:
    import httpx

__all__ = ["controller_error", "map_http_errors"]


def controller_error(response: httpx.Response, what: str) -> ControllerError | AuthenticationFailed:
    """The error for a controller's 4xx/5xx answer (its JSON ``error`` and ``message``).

    Args:
        response: the answer.
        what: the request, for the message (``"POST https://ctl/v1/leases"``).

    Returns:
        ``AuthenticationFailed`` for 401, else a ``ControllerError`` carrying the controller's
        ``code``, the HTTP status and the body's other fields as details.
    """
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error", "http_error"))
    message = f"{what}: {body.get('message') or response.reason_phrase} ({response.status_code})"
    if response.status_code == 401:
        return AuthenticationFailed(message)
    details = {k: v for k, v in body.items() if k not in ("error", "message", "status", "code")}
    return ControllerError(message, code=code, status=response.status_code, **details)


@contextlib.contextmanager
def map_http_errors(what: str) -> Iterator[None]:
    """Translate httpx's transport errors into ``ConnectFailed`` naming ``what``, once, here.

    Raises:
        ConnectFailed: the request timed out or could not reach the controller.
    """
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        raise ConnectFailed(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ConnectFailed(f"{what}: {exc or type(exc).__name__}") from exc
