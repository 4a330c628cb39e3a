"""tether across processes: a real exporter over TLS, the router relay, remote flashing.

``run(quick=False) -> dict`` gathers, into the ``tether`` column of the table:

* ``bench.exporter_bench``: call p50 and byte-stream MB/s through a ``tether exporter serve``
  process over TLS on loopback (``tls_call_p50_us``, ``tls_stream_mb_s``);
* ``bench.relay_bench``: the same through the controller's router relay, next to a direct
  connection measured in alternating rounds (``relay_call_ratio``, ``relay_bytes_ratio``);
* ``bench.storage_bench``: a 256 MiB image written to a ``MockStorageMux`` through a TLS
  exporter (``storage_tls_mb_s``).

A part that fails becomes a line in ``notes``. ``python -m bench.remote_bench [--quick]``
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["run"]


def _exporter(quick: bool) -> dict[str, Any]:
    from bench.exporter_bench import run as measure

    return measure(quick)


def _relay(quick: bool) -> dict[str, Any]:
    from bench.relay_bench import run as measure

    out = measure(quick)
    out.pop("targets", None)
    out.pop("meets_targets", None)
    return out


def _storage(quick: bool) -> dict[str, Any]:
    import os

    from bench.storage_bench import bench_storage_tls, make_image

    size_mb = int(os.environ.get("BENCH_STORAGE_MB", "256"))
    if quick:
        size_mb = min(size_mb, 64)
    if size_mb <= 0:
        return {"notes": ["storage: skipped (BENCH_STORAGE_MB <= 0)"]}
    with make_image(size_mb) as image:
        return bench_storage_tls(image, size_mb, rounds=2 if quick else 3)


PARTS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "exporter": _exporter,
    "relay": _relay,
    "storage": _storage,
}


def run(quick: bool = False) -> dict[str, Any]:
    """Every part's figures, merged; a failing part adds a note instead."""
    out: dict[str, Any] = {"notes": []}
    for name, part in PARTS.items():
        try:
            figures = part(quick)
        except Exception as exc:  # one broken part must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            out["notes"].append(f"{name}: failed: {type(exc).__name__}: {exc}")
            continue
        out["notes"].extend(figures.pop("notes", []))
        out.update(figures)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run(quick=args.quick)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
