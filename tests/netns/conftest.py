"""Network namespaces for the relay: a router, an exporter that accepts no inbound connection,
and a client that cannot route to the exporter at all.

```
 client ns  10.231.2.2 ── veth ── 10.231.2.1   router ns   10.231.1.1 ── veth ── 10.231.1.2  exporter ns
 (no route to the exporter)                   (no forwarding)            (nft: inbound SYN rejected,
                                                                           everything else new dropped)
```

Only private addresses, only inside the namespaces; the fixture creates and deletes them. These
tests need root, ``ip netns`` and ``nft``: when those are missing they FAIL, they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tether.security import init_lab_certs

PARTIES = Path(__file__).with_name("_parties.py")
#: The parties' environment: no TETHER_* variable from the caller overrides their config files.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
ROUTER_TO_EXPORTER = "10.231.1.1"
EXPORTER = "10.231.1.2"
ROUTER_TO_CLIENT = "10.231.2.1"
CLIENT = "10.231.2.2"

EXPORTER_FIREWALL = """
table inet tether_test {
    chain input {
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
        tcp flags syn counter reject with tcp reset
    }
}
"""


def run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Party:
    """A party process in a namespace, talking JSON lines."""

    process: subprocess.Popen[str]
    #: a command that does not read stdin (``tether ... serve``): stopped with SIGTERM
    terminate: bool = False

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"party exited (status {self.process.wait()}) without answering")
        result: dict[str, Any] = json.loads(line)
        return result

    def read_line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def send(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.terminate and self.process.poll() is None:
            self.process.terminate()
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Lab:
    """The namespaces, addresses, certificates (valid for both router addresses) and parties."""

    EXPORTER = EXPORTER
    CLIENT = CLIENT
    ROUTER_TO_EXPORTER = ROUTER_TO_EXPORTER
    ROUTER_TO_CLIENT = ROUTER_TO_CLIENT

    router_ns: str
    exporter_ns: str
    client_ns: str
    certs: Path
    parties: list[Party] = field(default_factory=list)

    def start(self, namespace: str, *args: str) -> Party:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(PARTIES), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=CLEAN_ENV,
        )
        party = Party(process)
        self.parties.append(party)
        return party

    def spawn(self, namespace: str, *argv: str, stderr: Any = None) -> Party:
        """Run any command in a namespace (``tether ...``), as a party."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=CLEAN_ENV,
        )
        party = Party(process, terminate=True)
        self.parties.append(party)
        return party

    def probe(self, namespace: str, host: str, port: int) -> str:
        out = run(
            "ip", "netns", "exec", namespace, sys.executable, str(PARTIES), "probe", host, str(port)
        )
        return str(json.loads(out)["result"])

    def firewall_rejections(self) -> int:
        ruleset = run("ip", "netns", "exec", self.exporter_ns, "nft", "-j", "list", "ruleset")
        for item in json.loads(ruleset)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise AssertionError("the exporter namespace has no counter rule")


def _require_tools() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root")
    problems += [f"{tool} not found" for tool in ("ip", "nft") if shutil.which(tool) is None]
    if problems:
        pytest.fail(
            "the network-namespace relay tests need root, iproute2 and nftables "
            f"(scripts/setup.sh installs them): {'; '.join(problems)}. They must not be skipped.",
            pytrace=False,
        )


@pytest.fixture
def netns_lab(tmp_path: Path) -> Iterator[Lab]:
    _require_tools()
    suffix = secrets.token_hex(3)
    names = [f"tth-{role}-{suffix}" for role in ("r", "e", "c")]
    router_ns, exporter_ns, client_ns = names
    created: list[str] = []
    try:
        for name in names:
            run("ip", "netns", "add", name)
            created.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        for peer_ns, here, there, near, far in (
            (exporter_ns, f"vre{suffix}", f"ver{suffix}", ROUTER_TO_EXPORTER, EXPORTER),
            (client_ns, f"vrc{suffix}", f"vcr{suffix}", ROUTER_TO_CLIENT, CLIENT),
        ):
            run(
                "ip",
                "-n",
                router_ns,
                "link",
                "add",
                here,
                "type",
                "veth",
                "peer",
                "name",
                there,
                "netns",
                peer_ns,
            )
            run("ip", "-n", router_ns, "addr", "add", f"{near}/30", "dev", here)
            run("ip", "-n", router_ns, "link", "set", here, "up")
            run("ip", "-n", peer_ns, "addr", "add", f"{far}/30", "dev", there)
            run("ip", "-n", peer_ns, "link", "set", there, "up")
        run("ip", "netns", "exec", exporter_ns, "nft", "-f", "-", stdin=EXPORTER_FIREWALL)
    except (RuntimeError, OSError) as exc:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)
        pytest.fail(f"cannot set up the network namespaces: {exc}", pytrace=False)
    certs_dir = tmp_path / "certs"
    init_lab_certs(certs_dir, server_names=(ROUTER_TO_EXPORTER, ROUTER_TO_CLIENT))
    lab = Lab(router_ns, exporter_ns, client_ns, certs_dir)
    try:
        yield lab
    finally:
        for party in reversed(lab.parties):
            party.stop()
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)
