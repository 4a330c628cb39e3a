"""``python -m bench.hostile [--quick] [--part controller|exporter]``: both parts (see
``controller_part`` and ``exporter_part``), their tables, then one JSON line.

Each part starts its own server process and measures a legitimate client's call p50 and the
server's RSS, idle and under each flood; targets: p50 within 3x of idle, RSS within 200 MB.
``--quick`` shortens each phase.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from . import controller_part, exporter_part


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--part", choices=("controller", "exporter"), help="run only this part")
    args = parser.parse_args()
    os.environ.pop("TETHER_TOKEN", None)
    result: dict[str, Any] = {}
    if args.part in (None, "controller"):
        result.update(controller_part.run(quick=args.quick))
        controller_part.print_table(result)
    if args.part in (None, "exporter"):
        exporter = exporter_part.run(quick=args.quick)
        exporter_part.print_table(exporter)
        for key in ("hostile_exporter_call_ratio_max", "hostile_exporter_rss_over_idle_mb_max"):
            result[key] = exporter.pop(key)
        result["exporter"] = exporter
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
