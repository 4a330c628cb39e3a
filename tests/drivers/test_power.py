"""Power drivers: MockPower, CommandPower (real subprocesses), HttpPower (a real HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether.drivers.power import (
    CommandPower,
    HttpPower,
    MockPower,
    PowerClient,
    PowerReading,
)
from tether.drivers.power._http import json_path
from tether.errors import ConfigError, DriverError, DriverNotImplemented, DriverTimeout
from tether.testing import (
    DriverRuntime,
    DriverTestConfig,
    DriverUnderTest,
    ForegroundDriverTest,
    TestNode,
    serve,
)

# -- cycle: the wait runs on the exporter, in virtual time --------------------------------------


def test_cycle_waits_on_the_exporter_in_virtual_time() -> None:
    with ForegroundDriverTest(DriverTestConfig(MockPower)) as test:
        test.start_driver()
        rt = test.runtime
        power = test.driver
        rt.run_to_completion(power.on())
        start = rt.now()
        task = rt.foreground_dispatcher.spawn(power.cycle(3600))
        rt.run_until_idle()
        assert rt.run_to_completion(power.status()) is False
        rt.advance_time(3599.5)
        assert not task.done()
        assert rt.run_to_completion(power.status()) is False
        rt.advance_time(0.5)
        assert task.done()
        assert rt.run_to_completion(power.status()) is True
        assert rt.now() - start == pytest.approx(3600)


def test_cycle_refuses_a_negative_wait() -> None:
    with ForegroundDriverTest(DriverTestConfig(MockPower)) as test:
        test.start_driver()
        with pytest.raises(ValueError, match=r"wait must not be negative"):
            test.runtime.run_to_completion(test.driver.cycle(-1))


def test_mock_power_client_over_the_wire() -> None:
    with serve(MockPower(voltage=12.0, current=1.5, samples=2)) as power:
        assert isinstance(power, PowerClient)
        assert power.status() is False
        power.on()
        assert power.status() is True
        assert list(power.read()) == [PowerReading(voltage=12.0, current=1.5)] * 2
        power.cycle(0)
        assert power.status() is True
        power.off()
        assert next(iter(power.read())) == PowerReading(voltage=0.0, current=0.0)


# -- CommandPower ---------------------------------------------------------------------------------


def command_power(tmp_path: Path, **extra: Any) -> CommandPower:
    state = tmp_path / "state"
    config: dict[str, Any] = {
        "on_command": f"echo on > {state}",
        "off_command": f"echo off > {state}",
        "status_command": f"grep -q on {state}",
        **extra,
    }
    return CommandPower(**config)


def test_command_power_switches_and_reads_status_from_the_exit_code(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serve(command_power(tmp_path)) as power:
        power.on()
        assert state.read_text() == "on\n"
        assert power.status() is True
        power.off()
        assert state.read_text() == "off\n"
        assert power.status() is False
        power.cycle(0)
        assert state.read_text() == "on\n"


def test_command_power_status_from_output_pattern(tmp_path: Path) -> None:
    state = tmp_path / "state"
    driver = command_power(tmp_path, status_command=f"cat {state}", status_pattern=r"^on$")
    with serve(driver) as power:
        power.off()
        assert power.status() is False
        power.on()
        assert power.status() is True


def test_command_power_status_exit_code_other_than_0_or_1_is_an_error(tmp_path: Path) -> None:
    with (
        serve(command_power(tmp_path, status_command="exit 7")) as power,
        pytest.raises(DriverError, match=r"exited with status 7 \(expected 0 for on or 1"),
    ):
        power.status()


def test_command_power_without_status_command_remembers_the_state(tmp_path: Path) -> None:
    with serve(command_power(tmp_path, status_command=None)) as power:
        assert power.status() is False
        power.on()
        assert power.status() is True


def test_command_power_failure_quotes_status_and_stderr(tmp_path: Path) -> None:
    with serve(command_power(tmp_path, on_command="echo relay jammed >&2; exit 3")) as power:
        with pytest.raises(DriverError, match=r"power on: .* exited with status 3: relay jammed"):
            power.on()
        power.off()  # the exporter keeps serving
        assert power.status() is False


def test_command_power_env_reaches_the_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    driver = command_power(tmp_path, on_command=f"echo $OUTLET > {state}", env={"OUTLET": "7"})
    with serve(driver) as power:
        power.on()
        assert state.read_text() == "7\n"


def test_command_power_timeout_kills_the_command_in_virtual_time(tmp_path: Path) -> None:
    config = DriverTestConfig(
        CommandPower,
        driver_config={"on_command": "sleep 1000", "off_command": "true", "timeout": 30},
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        with pytest.raises(TimeoutError, match=r"'sleep 1000' timed out and was killed"):
            test.runtime.run_to_completion(test.driver.on())
        assert test.runtime.run_to_completion(test.driver.status()) is False


def test_command_power_timeout_reaches_the_client_as_driver_timeout(tmp_path: Path) -> None:
    with (
        serve(command_power(tmp_path, off_command="sleep 1000", timeout=0.05)) as power,
        pytest.raises(DriverTimeout, match=r"timed out"),
    ):
        power.off()


def test_command_power_read_parses_the_output(tmp_path: Path) -> None:
    with serve(command_power(tmp_path, read_command="echo 5.1 0.25")) as power:
        assert list(power.read()) == [PowerReading(voltage=5.1, current=0.25)]
    custom = command_power(
        tmp_path,
        read_command="echo 'U=12.0V I=0.5A'",
        read_pattern=r"U=(?P<voltage>\S+)V I=(?P<current>\S+)A",
    )
    with serve(custom) as power:
        assert list(power.read()) == [PowerReading(voltage=12.0, current=0.5)]


def test_command_power_read_without_command_is_not_implemented(tmp_path: Path) -> None:
    with (
        serve(command_power(tmp_path)) as power,
        pytest.raises(DriverNotImplemented, match=r"no read_command"),
    ):
        list(power.read())


def test_command_power_bad_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"status_pattern: .*invalid regular expression '\('"):
        CommandPower(on_command="true", off_command="true", status_pattern="(")


# -- HttpPower against a real HTTP server ---------------------------------------------------------


class FakePdu:
    """A PDU's REST API: outlets switched by POST, state and meter by GET."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.outlets = {"1": False, "2": False}
        self.fail_with: int | None = None
        self.release = threading.Event()
        self.hang = False

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length)
        self.requests.append((handler.command, handler.path, dict(handler.headers), body))
        if self.hang:
            self.release.wait(10)
            return
        if self.fail_with is not None:
            self.reply(handler, self.fail_with, b"relay board offline")
            return
        parts = handler.path.strip("/").split("/")
        if handler.command in ("POST", "PUT") and parts[0] == "outlets":
            self.outlets[parts[1]] = (
                json.loads(body)["on"] if body.startswith(b"{") else body == b"1"
            )
            self.reply(handler, 204, b"")
        elif handler.command == "GET" and parts[0] == "outlets":
            self.reply(
                handler,
                200,
                json.dumps(
                    {
                        "outlets": [
                            {"id": k, "state": "ON" if v else "OFF"}
                            for k, v in self.outlets.items()
                        ]
                    }
                ).encode(),
            )
        elif handler.command == "GET" and parts[0] == "text":
            self.reply(
                handler, 200, f"relay2={'closed' if self.outlets['2'] else 'open'}\n".encode()
            )
        elif handler.command == "GET" and parts[0] == "meter":
            self.reply(handler, 200, b'{"ch": {"v": 230.5, "a": 0.12}}')
        else:
            self.reply(handler, 404, b"no such thing")

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def pdu() -> Iterator[tuple[FakePdu, str]]:
    fake = FakePdu()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.handle(self)

        do_POST = do_PUT = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def http_power(base_url: str, **extra: Any) -> HttpPower:
    return HttpPower(**http_power_config(base_url, **extra))


def http_power_config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "headers": {"Authorization": "Bearer lab-token"},
        "on_request": {"url": "/outlets/1", "body": {"on": True}},
        "off_request": {"method": "post", "url": "/outlets/1", "body": {"on": False}},
        "status_request": {"url": "/outlets", "json_path": "outlets.0.state"},
        "read_request": {"url": "/meter", "voltage_path": "ch.v", "current_path": "ch.a"},
        **extra,
    }


def test_http_power_lifecycle_with_driver_under_test(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    # No request timeout: with a timer pending, the kit's clock could jump past it while the
    # (real) server thread is still answering.
    with DriverRuntime() as rt:
        dut = DriverUnderTest(HttpPower, **http_power_config(url, timeout=None))
        with pytest.raises(RuntimeError, match="power on: the driver is not started"):
            rt.run_to_completion(dut.driver.on())
        rt.run_to_completion(dut.start(TestNode("pdu").create_start_args_and_serve().start_args))
        rt.run_to_completion(dut.driver.on())
        assert fake.outlets["1"] is True
        assert rt.run_to_completion(dut.driver.status()) is True
        client = dut.driver._client
        assert client is not None and not client.is_closed
        rt.run_to_completion(dut.prepare_stop())
        assert client.is_closed
        dut.stop()


def test_http_power_sends_the_configured_requests(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    with serve(http_power(url)) as power:
        power.on()
        assert fake.outlets["1"] is True
        method, path, headers, body = fake.requests[-1]
        assert (method, path, json.loads(body)) == ("POST", "/outlets/1", {"on": True})
        assert headers["Authorization"] == "Bearer lab-token"
        assert headers["Content-Type"] == "application/json"
        assert power.status() is True
        assert fake.requests[-1][:2] == ("GET", "/outlets")
        power.off()
        assert fake.outlets["1"] is False
        assert power.status() is False


def test_http_power_string_body_and_per_action_headers(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    driver = http_power(
        url,
        on_request={
            "method": "PUT",
            "url": f"{url}/outlets/2",
            "body": "1",
            "headers": {"X-Outlet": "2"},
        },
        status_request={"url": "/text", "regex": r"relay2=(\w+)", "on_values": ["closed"]},
    )
    with serve(driver) as power:
        assert power.status() is False
        power.on()
        method, path, headers, body = fake.requests[-1]
        assert (method, path, body, headers["X-Outlet"]) == ("PUT", "/outlets/2", b"1", "2")
        assert power.status() is True


def test_http_power_regex_without_group_means_on_when_it_matches(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    with serve(http_power(url, status_request={"url": "/text", "regex": "relay2=closed"})) as power:
        assert power.status() is False
        fake.outlets["2"] = True
        assert power.status() is True


def test_http_power_read_follows_json_paths(pdu: tuple[FakePdu, str]) -> None:
    _, url = pdu
    with serve(http_power(url)) as power:
        assert list(power.read()) == [PowerReading(voltage=230.5, current=0.12)]
    with (
        serve(http_power(url, read_request=None)) as power,
        pytest.raises(DriverNotImplemented, match=r"no read_request"),
    ):
        list(power.read())


def test_http_power_error_status_names_the_request(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    fake.fail_with = 503
    with serve(http_power(url)) as power:
        with pytest.raises(
            DriverError,
            match=r"power on: POST .*/outlets/1 answered 503 Service Unavailable: 'relay board offline'",
        ):
            power.on()
        fake.fail_with = None
        power.on()  # the exporter keeps serving
        assert power.status() is True


def test_http_power_json_path_mismatch_is_a_clear_error(pdu: tuple[FakePdu, str]) -> None:
    _, url = pdu
    with (
        serve(
            http_power(url, status_request={"url": "/outlets", "json_path": "outlets.5.state"})
        ) as power,
        pytest.raises(DriverError, match=r"outlets.5.state: no item 5 at outlets"),
    ):
        power.status()


def test_http_power_timeout(pdu: tuple[FakePdu, str]) -> None:
    fake, url = pdu
    fake.hang = True
    with (
        serve(http_power(url, timeout=0.05)) as power,
        pytest.raises(DriverTimeout, match=r"power on: POST /outlets/1 got no answer in 0.05 s"),
    ):
        power.on()


def test_http_power_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # nothing listens there once closed
    with (
        serve(http_power(f"http://127.0.0.1:{port}", timeout=2)) as power,
        pytest.raises(DriverError, match=r"power off: POST /outlets/1 failed"),
    ):
        power.off()


def test_http_power_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"give json_path or regex, not both"):
        http_power("http://x", status_request={"url": "/", "json_path": "a", "regex": "b"})
    with pytest.raises(
        ConfigError, match=r"on_request.url: required config field is missing|on_request.url"
    ):
        http_power("http://x", on_request={"method": "POST"})


def test_json_path() -> None:
    data = {"a": [{"b": 1}, {"b": [True]}]}
    assert json_path(data, "a.1.b.0") is True
    assert json_path(data, "a.-1.b") == [True]
    with pytest.raises(KeyError, match=r"a.x: no key 'x' at a"):
        json_path(data, "a.x")
