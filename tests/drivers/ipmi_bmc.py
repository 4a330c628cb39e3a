"""pyghmi's BMC simulator (``pyghmi.ipmi.bmc.Bmc``) with a chassis that keeps its power state.

``python ipmi_bmc.py PORT USER PASSWORD`` serves IPMI 2.0 (RMCP+) on 127.0.0.1:PORT (0: any
free port) and prints ``ready PORT`` once bound; ``power on`` / ``power off`` lines follow each
change. pyghmi does the protocol (sessions, authentication, chassis commands); this file only
keeps the state. Run as its own process: pyghmi's session layer is process-global, so the BMC
and a pyghmi client in one process would share it.
"""

from __future__ import annotations

import sys

from pyghmi.ipmi import bmc
from pyghmi.ipmi.private import serversession

_SHA1 = 1  # RMCP+ authentication algorithm RAKP-HMAC-SHA1 (IPMI 2.0 table 13-17)


class Sha1OnlySession(serversession.ServerSession):
    """pyghmi's server session speaks only cipher suite 3 (SHA-1) but answers every proposal as
    if it were accepted; pyghmi's client proposes SHA-256 first and believes it. This one
    refuses another algorithm with "invalid authentication algorithm" (status 0x11), as a
    SHA-1-only BMC does, so the client offers SHA-1 next (ipmitool picks suite 3 itself)."""

    def create_open_session_response(self, request: bytearray) -> bytearray:
        if len(request) > 12 and request[12] != _SHA1:
            self.clientsessionid = request[4:8]
            return bytearray([request[0], 0x11, 0, 0]) + self.clientsessionid
        response: bytearray = super().create_open_session_response(request)
        return response


serversession.ServerSession = Sha1OnlySession  # type: ignore[misc]  # what IpmiServer makes


class PowerBmc(bmc.Bmc):
    """A BMC whose chassis is a single power state, off at start."""

    powered = False

    def get_power_state(self) -> str:
        return "on" if self.powered else "off"

    def _set(self, on: bool) -> None:
        self.powered = on
        print(f"power {'on' if on else 'off'}", flush=True)

    def power_on(self) -> None:
        self._set(True)

    def power_off(self) -> None:
        self._set(False)

    def power_shutdown(self) -> None:
        self._set(False)

    def power_cycle(self) -> int | None:
        if not self.powered:
            return 0xD5  # command not supported in present state (as real BMCs answer)
        self._set(False)
        self._set(True)
        return None

    def power_reset(self) -> None:
        self._set(True)

    def is_active(self) -> bool:
        return self.powered

    def get_system_guid(self) -> str:
        return "5f3a9d2e-0000-4000-8000-746574686572"


def main() -> None:
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = PowerBmc({user: password}, port=port, address="127.0.0.1")
    bound = server.serversocket.getsockname()[1]
    server.port = bound  # pyghmi keys its sessions by the port it was given; 0 would not match
    print(f"ready {bound}", flush=True)
    server.listen()


if __name__ == "__main__":
    main()
