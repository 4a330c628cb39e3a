"""``HttpPower``: REST-controlled sockets and PDUs, one configurable request per action."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from tether.driver import Driver, export

from ._interface import PowerInterface, PowerReading

__all__ = [
    "HttpAction",
    "HttpPower",
    "HttpReadAction",
    "HttpStatusAction",
    "check_regex",
    "json_path",
]

_ON_VALUES: list[Any] = [True, 1, "1", "on", "true", "yes", "enabled"]


class HttpAction(BaseModel):
    """One HTTP request.

    Attributes:
        method: the HTTP method.
        url: absolute, or relative to the driver's ``base_url``.
        headers: added to the driver's ``headers``.
        body: a string is sent as is; any other value is sent as JSON.
    """

    model_config = ConfigDict(extra="forbid")

    method: str = "POST"
    url: str
    headers: dict[str, str] = {}
    body: Any = None

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def check_regex(value: str | None) -> str | None:
    """A pydantic validator: ``value`` must compile as a regular expression."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class HttpStatusAction(HttpAction):
    """The status request, and how to read its answer.

    Attributes:
        json_path: dotted path into the JSON answer (``outlets.2.state``; list items by index).
        regex: searched in the answer's text; its first group (or the whole match) is the value.
        on_values: values meaning "on" (strings compare case-insensitively). With ``regex``
            and no group, a match alone means on.
    """

    method: str = "GET"
    json_path: str | None = None
    regex: str | None = None
    on_values: list[Any] = _ON_VALUES

    _check = field_validator("regex")(check_regex)

    @model_validator(mode="after")
    def _one_way(self) -> HttpStatusAction:
        if self.json_path is not None and self.regex is not None:
            raise ValueError("give json_path or regex, not both")
        return self


class HttpReadAction(HttpAction):
    """The measurement request: JSON paths to the voltage and current."""

    method: str = "GET"
    voltage_path: str
    current_path: str


class HttpPower(PowerInterface, Driver):
    """A power switch behind an HTTP API (smart sockets, PDUs, relay boards).

    Config:
        on_request, off_request: the requests that switch power (:class:`HttpAction`).
        status_request: the request that reads the state (:class:`HttpStatusAction`);
            without it, ``status`` returns the state last switched to.
        read_request: the request for voltage and current (:class:`HttpReadAction`).
        base_url: prefix for relative action URLs.
        headers: sent with every request (e.g. ``Authorization``).
        timeout: seconds per request (``None``: no limit).
        verify: check TLS certificates.
    """

    on_request: HttpAction
    off_request: HttpAction
    status_request: HttpStatusAction | None = None
    read_request: HttpReadAction | None = None
    base_url: str = ""
    headers: dict[str, str] = {}
    timeout: float | None = 10.0
    verify: bool = True

    _powered: bool = False
    _client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, verify=self.verify
        )

    async def prepare_stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _send(self, what: str, action: HttpAction) -> httpx.Response:
        if self._client is None:
            raise RuntimeError(f"power {what}: the driver is not started")
        body = action.body
        content = body.encode() if isinstance(body, str) else None
        payload = None if body is None or isinstance(body, str) else body
        try:
            response = await self._client.request(
                action.method, action.url, headers=action.headers, content=content, json=payload
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(
                f"power {what}: {action.method} {action.url} got no answer in {self.timeout} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"power {what}: {action.method} {action.url} failed: {exc}"
            ) from exc
        if not response.is_success:
            raise ConnectionError(
                f"power {what}: {action.method} {response.url} answered "
                f"{response.status_code} {response.reason_phrase}: {response.text[:200]!r}"
            )
        return response

    @export
    async def on(self) -> None:
        """Switch power on (sends ``on_request``)."""
        await self._send("on", self.on_request)
        self._powered = True

    @export
    async def off(self) -> None:
        """Switch power off (sends ``off_request``)."""
        await self._send("off", self.off_request)
        self._powered = False

    @export
    async def status(self) -> bool:
        """True when power is on (see ``status_request``)."""
        action = self.status_request
        if action is None:
            return self._powered
        response = await self._send("status", action)
        if action.json_path is not None:
            value = json_path(_json(response, "status"), action.json_path)
        elif action.regex is not None:
            match = re.search(action.regex, response.text)
            if match is None:
                return False
            if not match.re.groups:
                return True
            value = match.group(1)
        else:
            value = response.text.strip()
        return _is_on(value, action.on_values)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Yield one sample from ``read_request``'s JSON answer."""
        action = self.read_request
        if action is None:
            raise NotImplementedError("this HttpPower has no read_request configured")
        data = _json(await self._send("read", action), "read")
        yield PowerReading(
            voltage=float(json_path(data, action.voltage_path)),
            current=float(json_path(data, action.current_path)),
        )


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"power {what}: expected a JSON answer from {response.url}, got {response.text[:200]!r}"
        ) from exc


def _is_on(value: Any, on_values: list[Any]) -> bool:
    for candidate in on_values:
        if isinstance(value, str) and isinstance(candidate, str):
            if value.strip().lower() == candidate.lower():
                return True
        elif type(value) is type(candidate) and value == candidate:
            return True
    return False


def json_path(data: Any, path: str) -> Any:
    """Follow a dotted ``path`` (``a.b.0.c``; digits index lists) into decoded JSON.

    Raises:
        KeyError: a segment is missing, naming the path walked so far.
    """
    current = data
    walked: list[str] = []
    for segment in path.split("."):
        if isinstance(current, list) and segment.lstrip("-").isdigit():
            index = int(segment)
            if not -len(current) <= index < len(current):
                raise KeyError(f"{path}: no item {index} at {'.'.join(walked) or '(top)'}")
            current = current[index]
        elif isinstance(current, dict) and segment in current:
            current = current[segment]
        else:
            raise KeyError(f"{path}: no key {segment!r} at {'.'.join(walked) or '(top)'}")
        walked.append(segment)
    return current
