"""The peer's own venv: Jumpstarter 0.9 from PyPI in ``bench/.venv-jumpstarter``.

Created on first use with ``python -m venv`` and ``pip install``; later runs find the stamp file
and reuse it (idempotent). When anything fails the bench goes on without the peer and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["REQUIREMENTS", "VENV_DIR", "ensure_jumpstarter_venv", "venv_python"]

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".venv-jumpstarter"

# 0.9.0 is the only 0.9 release of each of these today; ``==0.9.*`` keeps them on one series.
# MockStorageMux lives in the opendal driver package in 0.9.
REQUIREMENTS: tuple[str, ...] = (
    "jumpstarter==0.9.*",
    "jumpstarter-driver-power==0.9.*",
    "jumpstarter-driver-network==0.9.*",
    "jumpstarter-driver-opendal==0.9.*",
)
_STAMP = VENV_DIR / ".bench-ready"
_LOG = VENV_DIR / "bench-install.log"
_INSTALL_TIMEOUT = 900.0


def venv_python(venv: Path = VENV_DIR) -> Path:
    return venv / "bin" / "python"


def _stamp_text() -> str:
    return json.dumps({"requirements": list(REQUIREMENTS), "python": sys.version_info[:2]})


def _base_python() -> str:
    """The interpreter to build the venv from: this one (Jumpstarter 0.9 needs 3.11+)."""
    return sys.executable or shutil.which("python3") or "python3"


def ensure_jumpstarter_venv(*, log: bool = True) -> tuple[Path | None, str]:
    """Make sure the Jumpstarter venv exists; return ``(python, message)``.

    ``python`` is ``None`` when the venv could not be made (no network, no PyPI, a failed
    build); ``message`` then says why.
    """
    python = venv_python()
    if _STAMP.is_file() and _STAMP.read_text() == _stamp_text() and python.exists():
        return python, f"reusing {VENV_DIR.relative_to(BENCH_DIR.parent)}"

    def say(text: str) -> None:
        if log:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    say(f"creating {VENV_DIR} with {', '.join(REQUIREMENTS)} (first run only)")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "VIRTUAL_ENV": str(VENV_DIR)}
    env.pop("PYTHONPATH", None)
    steps = [
        [_base_python(), "-m", "venv", "--clear", str(VENV_DIR)],
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
    ]
    output: list[str] = []
    for step in steps:
        try:
            done = subprocess.run(
                step,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"Jumpstarter venv: {' '.join(step[:3])} failed: {exc}"
        output.append(f"$ {' '.join(step)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            _write_log(output)
            lines = (done.stderr + done.stdout).strip().splitlines()
            tail = [line for line in lines if not line.startswith("WARNING:")][-3:]
            return None, (
                f"Jumpstarter venv: `{' '.join(step[:4])} ...` exited {done.returncode}"
                f" ({' | '.join(tail)}); skipping the Jumpstarter column"
            )
    _write_log(output)
    _STAMP.write_text(_stamp_text())
    return python, f"created {VENV_DIR.relative_to(BENCH_DIR.parent)}"


def _write_log(output: list[str]) -> None:
    if VENV_DIR.is_dir():
        _LOG.write_text("\n".join(output))


if __name__ == "__main__":
    path, message = ensure_jumpstarter_venv()
    print(message)
    raise SystemExit(0 if path else 1)
