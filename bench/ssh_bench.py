"""The SSH driver against OpenSSH's own client, on one sshd, side by side.

``python -m bench.ssh_bench [--quick]`` starts a real ``sshd`` on 127.0.0.1 (its own keys and
config, ``tether.drivers.ssh.testing``), an exporter process (``tether exporter serve``, TLS,
a bearer token) with an ``Ssh`` node for it, and an OpenSSH ControlMaster connection to the
same sshd. It prints one JSON object:

    ssh_run_p50_ms: ``dut.ssh.run("true")`` through tether: client -> exporter (TLS) -> sshd,
        on the SSH connection the session keeps;
    openssh_run_p50_ms: ``ssh -o ControlPath=... host true``: OpenSSH's client reusing its
        ControlMaster connection (no handshake, as tether's kept connection);
    ssh_run_ratio: the first over the second (target: <= 1.5);
    ssh_put_mb_s: ``dut.ssh.put(file, remote)`` of a 64 MiB file through tether (SFTP);
    scp_put_mb_s: ``scp`` of the same file to the same sshd, through the same ControlMaster
        (so it pays no handshake either; OpenSSH 9's scp speaks SFTP);
    ssh_put_ratio: the first over the second (target: >= 0.7).

The two sides alternate call by call (and transfer by transfer, who goes first alternating
too), so drift on a shared machine hits both alike; each figure is a median (40 calls and 5
transfers a side; ``--quick``: 10 and 2). Files live in ``tempfile.gettempdir()`` (``make
bench`` points it at /dev/shm when it can).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
PUT_MIB = 64


def _start_exporter(work: Path, config_text: str) -> tuple[subprocess.Popen[str], str, str, str]:
    from tether.exporter import generate_token, hash_token, init_lab_certs

    certs = init_lab_certs(work / "certs")
    token = generate_token()
    config = work / "bench-ssh.yaml"
    config.write_text(
        "name: bench-ssh\n"
        f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}\n"
        f"tokens: [{hash_token(token)}]\n" + config_text
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tether"), "exporter", "serve", str(config),
         "--listen", "tls://127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = ""
    for line in process.stdout:
        line = line.strip()
        if line.startswith("listening on "):
            url = line.removeprefix("listening on ")
        elif line == "ready":
            break
    else:
        process.wait()
        raise RuntimeError(f"the exporter exited with status {process.returncode}")
    return process, url, token, str(certs.ca)


def _timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def _openssh(command: list[str]) -> None:
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both sides (see the module docstring)."""
    import tether
    from tether.drivers.ssh.testing import run_sshd

    calls = 10 if quick else 40
    puts = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="tether-bench-ssh-") as tmp:
        work = Path(tmp)
        with run_sshd(work / "sshd") as sshd:
            node = (
                "export:\n  ssh:\n    type: tether.drivers.ssh.Ssh\n    config:\n"
                f"      host: 127.0.0.1\n      port: {sshd.port}\n      user: {sshd.user}\n"
                f'      key_file: {sshd.client_key}\n      host_key: "{sshd.host_key}"\n'
            )
            exporter, url, token, ca = _start_exporter(work, node)
            control = work / "cm.sock"
            base = [*sshd.ssh_options(), "-o", f"ControlPath={control}"]
            where = f"{sshd.user}@{sshd.host}"
            subprocess.run(
                ["ssh", *base, "-M", "-N", "-f", "-p", str(sshd.port), where],
                check=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            openssh = ["ssh", *base, "-p", str(sshd.port), where, "true"]
            image = work / "image.bin"
            with image.open("wb") as f:
                for _ in range(PUT_MIB):
                    f.write(os.urandom(1 << 20))
            size = image.stat().st_size
            try:
                with tether.connect(url, token=token, ca=ca) as dut:
                    ssh = dut.ssh
                    for _ in range(3):  # warm up both: connection, SFTP client, page cache
                        ssh.run("true")
                        subprocess.run(openssh, check=True, stdin=subprocess.DEVNULL)
                    ours: list[float] = []
                    theirs: list[float] = []
                    for _ in range(calls):
                        ours.append(_timed(ssh.run, "true"))
                        theirs.append(_timed(_openssh, openssh))
                    ssh.put(b"warm", str(work / "warm"))
                    put_ours: list[float] = []
                    put_theirs: list[float] = []
                    scp = ["scp", "-q", *base, "-P", str(sshd.port), str(image)]
                    for round_number in range(puts):
                        target = work / f"tether-{round_number}.bin"
                        copy = work / f"scp-{round_number}.bin"
                        sides = [
                            (put_ours, ssh.put, (image, str(target)), target),
                            (put_theirs, _openssh, ([*scp, f"{where}:{copy}"],), copy),
                        ]
                        if round_number % 2:  # who goes first alternates
                            sides.reverse()
                        for times, fn, args, written in sides:
                            times.append(_timed(fn, *args))
                            if written.stat().st_size != size:
                                raise RuntimeError(f"{written.name}: wrong size")
                            written.unlink()
            finally:
                subprocess.run(
                    ["ssh", *base, "-O", "exit", "-p", str(sshd.port), where],
                    stdin=subprocess.DEVNULL, capture_output=True, check=False,
                )  # fmt: skip
                exporter.terminate()
                exporter.wait(30)
                if exporter.stdout is not None:
                    exporter.stdout.close()
    run_ms = statistics.median(ours) * 1e3
    openssh_ms = statistics.median(theirs) * 1e3
    put_mb_s = size / statistics.median(put_ours) / 1e6
    scp_mb_s = size / statistics.median(put_theirs) / 1e6
    return {
        "ssh_run_p50_ms": run_ms,
        "openssh_run_p50_ms": openssh_ms,
        "ssh_run_ratio": run_ms / openssh_ms,
        "ssh_put_mb_s": put_mb_s,
        "scp_put_mb_s": scp_mb_s,
        "ssh_put_ratio": put_mb_s / scp_mb_s,
        "ssh_put_mib": PUT_MIB,
        "notes": [
            f"run('true') p50 {run_ms:.1f} ms through tether vs {openssh_ms:.1f} ms "
            f"OpenSSH ControlMaster ({run_ms / openssh_ms:.2f}x); put {PUT_MIB} MiB "
            f"{put_mb_s:.0f} MB/s vs scp {scp_mb_s:.0f} MB/s ({put_mb_s / scp_mb_s:.0%})"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ssh_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run(quick=args.quick)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
