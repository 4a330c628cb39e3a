"""pymodbus's own ``ModbusTcpServer`` as a process: ``python modbus_server.py COILS UNIT...``.

Binds 127.0.0.1 on a free port and prints ``ready PORT``; serves until killed. The benchmark
runs it as its own process so that the peer does not share the interpreter (and its GIL) with
the client being measured.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def device(unit: int, coils: int) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
            [SimData(0, count=1, values=False, datatype=DataType.BITS)],
            [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
        ),
    )


async def main() -> None:
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    coils, units = int(sys.argv[1]), [int(u) for u in sys.argv[2:]] or [1]
    server = ModbusTcpServer([device(u, coils) for u in units], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    print(f"ready {server.transport.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
