"""A net-snmp ``pass_persist`` handler: PDU outlet tables whose state lives in a JSON file.

snmpd starts this script and speaks the pass_persist protocol to it on stdin/stdout (see
snmpd.conf(5), "pass_persist"); snmpd itself does all of SNMP (v2c, v3 USM, errors). Tables:

- ``apc``: PowerNet-MIB ``sPDUOutletCtl`` (1.3.6.1.4.1.318.1.1.4.4.2.1.3.N): set 1 on, 2 off,
  3 reboot (ends on); reads back 1 on, 2 off.
- ``raritan``: PDU2-MIB ``switchingOperation`` (.13742.6.4.1.2.1.2.1.N: 0 off, 1 on, 2 cycle)
  and ``outletSwitchingState`` (.13742.6.4.1.2.1.3.1.N: 7 on, 8 off).
- ``generic``: a table ``BASE.1.N`` (INTEGER 0/1) for the generic profile.

Outlets 1..8. A set of any other value answers ``wrong-value``; outlet 8 of ``apc`` is
read-only (``not-writable``), for error tests.
"""

from __future__ import annotations

import json
import os
import sys

KIND, BASE, STATE = sys.argv[1], sys.argv[2].strip("."), sys.argv[3]
OUTLETS = range(1, 9)


def load() -> dict[str, int]:
    try:
        with open(STATE) as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return {}


def save(state: dict[str, int]) -> None:
    tmp = f"{STATE}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE)


def rows() -> list[tuple[str, str, int]]:
    """Every (oid, outlet key, column) of the table, in OID order."""
    if KIND == "raritan":
        return [(f"{BASE}.{col}.1.{n}", f"{KIND}.{n}", col) for col in (2, 3) for n in OUTLETS]
    if KIND == "generic":
        return [(f"{BASE}.1.{n}", f"{KIND}.{n}", 1) for n in OUTLETS]
    return [(f"{BASE}.{n}", f"{KIND}.{n}", 0) for n in OUTLETS]


def value(key: str, column: int) -> int:
    on = load().get(key, 0) == 1
    if KIND == "raritan":
        return (1 if on else 0) if column == 2 else (7 if on else 8)
    if KIND == "generic":
        return 1 if on else 0
    return 1 if on else 2


def set_value(oid: str, raw: str) -> str:
    match = [(key, col) for o, key, col in rows() if o == oid]
    if not match:
        return "not-writable"
    key, col = match[0]
    kind, _, text = raw.partition(" ")
    if kind.lower() != "integer":
        return "wrong-type"
    number = int(text)
    if KIND == "apc":
        if key.endswith(".8"):
            return "not-writable"
        new = {1: 1, 2: 0, 3: 1}.get(number)
    elif KIND == "raritan":
        new = {0: 0, 1: 1, 2: 1}.get(number) if col == 2 else None
    else:
        new = {0: 0, 1: 1}.get(number)
    if new is None:
        return "wrong-value"
    state = load()
    state[key] = new
    save(state)
    return "DONE"


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split("."))


def _traced(lines, path):
    with open(path, "a") as out:
        for line in lines:
            out.write(f"{os.getpid()} < {line!r}\n")
            out.flush()
            yield line


def main() -> None:
    table = rows()
    lines = iter(sys.stdin.readline, "")
    trace = os.environ.get("SNMP_OUTLETS_TRACE")
    if trace:
        lines = _traced(lines, trace)
    for line in lines:
        command = line.strip()
        if command == "PING":
            print("PONG", flush=True)
        elif command in ("get", "getnext"):
            oid = next(lines).strip().strip(".")
            if command == "get":
                found = [(o, k, c) for o, k, c in table if o == oid]
            else:
                found = [(o, k, c) for o, k, c in table if oid_key(o) > oid_key(oid)][:1]
            if found:
                o, k, c = found[0]
                print(f".{o}\ninteger\n{value(k, c)}", flush=True)
            else:
                print("NONE", flush=True)
        elif command == "set":
            oid = next(lines).strip().strip(".")
            print(set_value(oid, next(lines).strip()), flush=True)
        # anything else (snmpd sends a blank line after a set) is ignored; EOF ends us


if __name__ == "__main__":
    main()
