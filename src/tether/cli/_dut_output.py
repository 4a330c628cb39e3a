"""How ``dut`` prints what drivers return: plain for scalars, JSON for structured values.

* ``None`` prints nothing; strings print as they are; numbers as numbers; booleans as
  ``true``/``false``; ``bytes`` go to stdout raw (so ``dut node dump > file`` works).
* Structured values (lists, dicts, pydantic models, dataclasses, enums) print as JSON: indented
  for a unary result, one compact line per item for a streaming call (JSON Lines).
* ``--json`` prints every value as one compact JSON line, bytes as base64 text.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Any, BinaryIO

import pydantic_core

__all__ = ["jsonable", "write_value"]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (bytes as base64 text)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return pydantic_core.to_jsonable_python(value, fallback=repr)


def write_value(out: BinaryIO, value: Any, *, as_json: bool, item: bool = False) -> None:
    """Write one result (or one streamed item when ``item``) to ``out`` and flush it."""
    if as_json:
        data = json.dumps(jsonable(value)).encode() + b"\n"
    elif value is None:
        return
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, bool):
        data = b"true\n" if value else b"false\n"
    elif isinstance(value, str):
        data = value.encode() + (b"" if value.endswith("\n") else b"\n")
    elif isinstance(value, int | float):
        data = f"{value}\n".encode()
    elif isinstance(value, enum.Enum) and isinstance(value.value, str | int | float):
        data = f"{value.value}\n".encode()
    else:
        text = json.dumps(jsonable(value), indent=None if item else 2, ensure_ascii=False)
        data = text.encode() + b"\n"
    out.write(data)
    out.flush()
