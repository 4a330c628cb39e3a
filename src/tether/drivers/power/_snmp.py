"""``SnmpPower``: one outlet of a network PDU, switched with SNMP SET (pysnmp, v2c or v3).

A profile says which OID switches the outlet, which reads it and what the values mean: APC
(PowerNet-MIB ``sPDUOutletCtl``), Raritan (PDU2-MIB ``switchingOperation`` and
``outletSwitchingState``) or ``generic`` (OIDs and values from the config). The engine and the
transport target are made on first use (pysnmp is imported only then: the ``snmp`` extra) and
kept for the driver's life. pysnmp's own timeout is split over its retries so one request never
outlasts the configured ``timeout``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, field_validator

from tether.errors import ConfigError
from tether.extras import import_extra, requires_extra

from ._device import DevicePower
from ._errors import (
    PowerDeviceAuthError,
    PowerDeviceError,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    PowerDeviceUnreachable,
)

__all__ = ["SNMP_PROFILES", "SnmpOids", "SnmpPower"]

_HLAPI = "pysnmp.hlapi.v3arch.asyncio"

_AUTH = {
    "md5": "USM_AUTH_HMAC96_MD5",
    "sha": "USM_AUTH_HMAC96_SHA",
    "sha224": "USM_AUTH_HMAC128_SHA224",
    "sha256": "USM_AUTH_HMAC192_SHA256",
    "sha384": "USM_AUTH_HMAC256_SHA384",
    "sha512": "USM_AUTH_HMAC384_SHA512",
}
_PRIV = {
    "des": "USM_PRIV_CBC56_DES",
    "3des": "USM_PRIV_CBC168_3DES",
    "aes": "USM_PRIV_CFB128_AES",
    "aes192": "USM_PRIV_CFB192_AES",
    "aes256": "USM_PRIV_CFB256_AES",
}

# errorIndication names (pysnmp.proto.errind) that mean "your credentials are wrong".
_AUTH_INDICATIONS = (
    "unknownUserName",
    "wrongDigest",
    "unknownSecurityName",
    "unsupportedSecurityLevel",
    "authenticationFailure",
    "decryptionError",
    "notInTimeWindow",
)
# errorStatus names of a response that refuses us for access reasons, not the value.
_ACCESS_STATUSES = ("noAccess", "authorizationError")


def _oid(value: str) -> str:
    text = value.strip().lstrip(".")
    probe = text.replace("{outlet}", "1")
    if not probe or not all(part.isdigit() for part in probe.split(".")):
        raise ValueError(f"{value!r} is not a numeric OID (digits and dots, `{{outlet}}` allowed)")
    return text


class SnmpOids(BaseModel):
    """Where an outlet is switched and read, and what the values mean.

    Attributes:
        control: OID written to switch; ``{outlet}`` is replaced by the outlet number.
        status: OID read for the state (default: ``control``).
        on, off: the INTEGER values written to switch on and off.
        status_on, status_off: values read back that mean on and off (default: ``[on]`` and
            ``[off]``); any other value is reported as an error.
    """

    model_config = ConfigDict(extra="forbid")

    control: str
    status: str | None = None
    on: int = 1
    off: int = 2
    status_on: list[int] = []
    status_off: list[int] = []

    @field_validator("control", "status")
    @classmethod
    def _numeric(cls, value: str | None) -> str | None:
        return None if value is None else _oid(value)

    def oid(self, which: str, outlet: int) -> str:
        template = self.control if which == "control" or self.status is None else self.status
        return template.replace("{outlet}", str(outlet))

    def state_of(self, value: int) -> bool | None:
        if value in (self.status_on or [self.on]):
            return True
        if value in (self.status_off or [self.off]):
            return False
        return None


#: Built-in profiles. APC: PowerNet-MIB sPDUOutletCtl (1 on, 2 off; reads back the same).
#: Raritan: PDU2-MIB switchingOperation (0 off, 1 on) and outletSwitchingState (7 on, 8 off),
#: on PDU 1.
SNMP_PROFILES: dict[str, SnmpOids] = {
    "apc": SnmpOids(control="1.3.6.1.4.1.318.1.1.4.4.2.1.3.{outlet}", on=1, off=2),
    "raritan": SnmpOids(
        control="1.3.6.1.4.1.13742.6.4.1.2.1.2.1.{outlet}",
        status="1.3.6.1.4.1.13742.6.4.1.2.1.3.1.{outlet}",
        on=1,
        off=0,
        status_on=[7],
        status_off=[8],
    ),
}


@requires_extra("snmp")
class SnmpPower(DevicePower):
    """One outlet of an SNMP PDU (APC, Raritan, or any PDU given as OIDs and values).

    Config:
        host: the PDU's address.
        port: SNMP UDP port.
        outlet: the outlet number (1-based, as on the PDU's label).
        profile: ``apc``, ``raritan`` or ``generic`` (then ``oids`` is required).
        oids: :class:`SnmpOids` for ``generic``; with another profile it overrides it.
        snmp_version: ``2c`` (community) or ``3`` (USM user).
        community: the read-write community (v2c).
        user: the USM user name (v3).
        auth_protocol: ``md5``, ``sha``, ``sha224``, ``sha256``, ``sha384``, ``sha512``;
            ``none`` for noAuthNoPriv.
        auth_key, priv_key: the pass phrases (v3; never logged or shown).
        priv_protocol: ``des``, ``3des``, ``aes``, ``aes192``, ``aes256``; ``none`` for
            authNoPriv.
        context: the SNMPv3 context name.
        retries: pysnmp's retries within one ``timeout``.
        timeout: seconds one request may take in all.
    """

    host: str
    port: int = 161
    outlet: int
    profile: Literal["apc", "raritan", "generic"] = "apc"
    oids: SnmpOids | None = None
    snmp_version: Annotated[Literal["2c", "3"], BeforeValidator(str)] = "2c"  # YAML: 3
    community: SecretStr = SecretStr("private")
    user: str | None = None
    auth_protocol: Literal["none", "md5", "sha", "sha224", "sha256", "sha384", "sha512"] = "sha"
    auth_key: SecretStr | None = None
    priv_protocol: Literal["none", "des", "3des", "aes", "aes192", "aes256"] = "aes"
    priv_key: SecretStr | None = None
    context: str = ""
    retries: int = 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.profile == "generic" and self.oids is None:
            raise ConfigError("SnmpPower: profile `generic` needs `oids` (control, on, off)")
        if self.snmp_version == "3":
            if not self.user:
                raise ConfigError("SnmpPower: snmp_version 3 needs `user`")
            if self.auth_protocol != "none" and self.auth_key is None:
                raise ConfigError(f"SnmpPower: auth_protocol {self.auth_protocol} needs auth_key")
            if self.priv_protocol != "none" and self.auth_protocol == "none":
                raise ConfigError("SnmpPower: privacy needs authentication (set auth_protocol)")
            if self.priv_protocol != "none" and self.priv_key is None:
                raise ConfigError(f"SnmpPower: priv_protocol {self.priv_protocol} needs priv_key")
        if self.outlet < 0 or self.retries < 0 or self.timeout <= 0:
            raise ConfigError("SnmpPower: outlet and retries must be >= 0, timeout > 0")
        self._table = self.oids or SNMP_PROFILES[self.profile]
        self._engine: Any = None
        self._target: Any = None
        self._auth: Any = None

    def device(self) -> str:
        return f"snmp://{self.host}:{self.port} outlet {self.outlet}"

    def timeout_hint(self) -> str:
        return (
            " (an agent given a wrong community does not answer)"
            if self.snmp_version == "2c"
            else ""
        )

    # -- pysnmp, made on first use ----------------------------------------------------------

    def _credentials(self, hlapi: Any) -> Any:
        if self.snmp_version == "2c":
            return hlapi.CommunityData(self.community.get_secret_value(), mpModel=1)
        auth = (
            hlapi.USM_AUTH_NONE
            if self.auth_protocol == "none"
            else getattr(hlapi, _AUTH[self.auth_protocol])
        )
        priv = (
            hlapi.USM_PRIV_NONE
            if self.priv_protocol == "none"
            else getattr(hlapi, _PRIV[self.priv_protocol])
        )
        return hlapi.UsmUserData(
            self.user,
            authKey=self.auth_key.get_secret_value() if self.auth_key else None,
            privKey=self.priv_key.get_secret_value() if self.priv_key else None,
            authProtocol=auth,
            privProtocol=priv,
        )

    async def _session(self) -> Any:
        hlapi = import_extra("snmp", _HLAPI, "tether.drivers.power.SnmpPower")
        if self._target is None:
            try:
                self._target = await hlapi.UdpTransportTarget.create(
                    (self.host, self.port),
                    timeout=self.timeout / (self.retries + 1),
                    retries=self.retries,
                )
            except Exception as exc:  # pysnmp raises its own error for unresolvable hosts
                raise PowerDeviceUnreachable(
                    f"{self.device()}: cannot reach the agent: {exc}"
                ) from None
        if self._engine is None:
            self._engine = hlapi.SnmpEngine()
            self._auth = self._credentials(hlapi)
        return hlapi

    @contextlib.contextmanager
    def _answer(self, what: str, oid: str, answer: Any) -> Iterator[list[Any]]:
        """Turn pysnmp's (errorIndication, errorStatus, errorIndex, varBinds) into errors."""
        indication, status, _index, var_binds = answer
        where = f"{self.device()}: {what} ({oid})"
        if indication:
            name = type(indication).__name__
            text = str(indication)
            if name == "RequestTimedOut" or "timeout" in text.lower():
                raise PowerDeviceTimeout(
                    f"{where}: no answer within {self.timeout} s{self.timeout_hint()}"
                ) from None
            if any(key.lower() in (name + text).lower() for key in _AUTH_INDICATIONS):
                raise PowerDeviceAuthError(
                    f"{where}: the agent refused user {self.user!r}: {text}"
                ) from None
            raise PowerDeviceError(f"{where}: {text}") from None
        if status:
            label = status.prettyPrint()
            cls = PowerDeviceAuthError if label in _ACCESS_STATUSES else PowerDeviceRefused
            raise cls(f"{where}: the agent answered {label}") from None
        for var_bind in var_binds:
            value = var_bind[1]
            kind = type(value).__name__
            if kind in ("NoSuchObject", "NoSuchInstance", "EndOfMibView"):
                raise PowerDeviceRefused(f"{where}: the agent has no such object ({kind})")
        yield list(var_binds)

    async def _switch(self, on: bool) -> None:
        hlapi = await self._session()
        oid = self._table.oid("control", self.outlet)
        value = self._table.on if on else self._table.off
        answer = await hlapi.set_cmd(
            self._engine,
            self._auth,
            self._target,
            hlapi.ContextData(contextName=self.context),
            hlapi.ObjectType(hlapi.ObjectIdentity(oid), hlapi.Integer32(value)),
            lookupMib=False,
        )
        with self._answer(f"set {value}", oid, answer):
            pass

    async def _query(self) -> bool:
        hlapi = await self._session()
        oid = self._table.oid("status", self.outlet)
        answer = await hlapi.get_cmd(
            self._engine,
            self._auth,
            self._target,
            hlapi.ContextData(contextName=self.context),
            hlapi.ObjectType(hlapi.ObjectIdentity(oid)),
            lookupMib=False,
        )
        with self._answer("get", oid, answer) as var_binds:
            raw = var_binds[0][1]
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise PowerDeviceRefused(
                f"{self.device()}: get ({oid}): expected an INTEGER, got {raw.prettyPrint()!r}"
            ) from None
        state = self._table.state_of(value)
        if state is None:
            raise PowerDeviceRefused(
                f"{self.device()}: get ({oid}): state {value} is neither on "
                f"({self._table.status_on or [self._table.on]}) nor off "
                f"({self._table.status_off or [self._table.off]})"
            )
        return state

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
