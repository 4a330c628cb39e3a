"""StorageMux (configured commands) and UsbSdMux (the usbsdmux library).

What runs here without mux hardware:

- ``StorageMux``: real commands (``/bin/sh``) that keep the mux state in a file and make the
  "block device" appear and vanish as a card reader does; failures, timeouts (real and in the
  kit's virtual time), a missing device node, an unparsable status.
- ``UsbSdMux``: the ``usbsdmux`` library's own device layer on the error paths it takes here
  (no ``/dev/sg`` node; a node that is not a USB-SD-Mux, where its SG_IO ioctl fails); the
  switching logic above the library against ``FakeUsbSdMuxDevice``, a fake of the library's
  device object defined in this file (no hardware: named as a fake).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

import tether
from tether.drivers.storage import (
    StorageModeError,
    StorageMux,
    StorageMuxClient,
    StorageSwitchError,
    StorageSwitchTimeout,
    UsbSdMux,
)
from tether.errors import DriverError
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve


def mux_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Commands that behave like a card reader: ``host`` makes the device file appear."""
    state, disk = tmp_path / "mux-state", tmp_path / "card.img"
    config: dict[str, Any] = {
        "path": str(disk),
        "host_command": f"echo host > {state} && touch {disk}",
        "dut_command": f"echo dut > {state} && rm -f {disk}",
        "off_command": f"echo off > {state} && rm -f {disk}",
        "status_command": f"cat {state} 2>/dev/null || echo off",
        "timeout": 10,
    }
    config.update(extra)
    return config


def test_commands_switch_and_status_reads_back(tmp_path: Path) -> None:
    state = tmp_path / "mux-state"
    with serve(StorageMux(**mux_config(tmp_path))) as mux:
        assert isinstance(mux, StorageMuxClient)
        assert mux.status() == "off"
        mux.host()
        assert state.read_text() == "host\n" and (tmp_path / "card.img").exists()
        image = tmp_path / "image.raw"
        image.write_bytes(b"boot" * 1024)
        assert mux.write(image, progress=False).bytes == 4096
        mux.dut()
        assert state.read_text() == "dut\n" and mux.status() == "dut"
        state.write_text("HOST\n")  # someone switched it by hand
        assert mux.status() == "host"
        mux.off()
        assert mux.status() == "off"


def test_initial_mode_is_switched_at_start(tmp_path: Path) -> None:
    with serve(StorageMux(**mux_config(tmp_path, initial="dut"))) as mux:
        assert (tmp_path / "mux-state").read_text() == "dut\n"
        assert mux.status() == "dut"


def test_a_failing_command_is_a_clear_error(tmp_path: Path) -> None:
    config = mux_config(tmp_path, dut_command="echo 'no mux at /dev/sg9' >&2; exit 3")
    with (
        serve(StorageMux(**config)) as mux,
        pytest.raises(StorageSwitchError) as caught,
    ):
        mux.dut()
        assert isinstance(caught.value, DriverError)
        message = str(caught.value)
        assert f"storage mux {tmp_path / 'card.img'}: switch to dut" in message
        assert "exited with status 3: no mux at /dev/sg9" in message
        mux.host()  # still serving
        assert mux.status() == "host"


def test_a_hanging_command_is_killed_at_the_timeout(tmp_path: Path) -> None:
    with (
        serve(StorageMux(**mux_config(tmp_path, host_command="sleep 60", timeout=0.5))) as mux,
        pytest.raises(
            StorageSwitchTimeout, match=r"switch to host: 'sleep 60' did not finish within 0\.5 s"
        ),
    ):
        mux.host()


def test_the_device_that_never_appears(tmp_path: Path) -> None:
    config = mux_config(tmp_path, host_command="true", timeout=0.5)
    with (
        serve(StorageMux(**config)) as mux,
        pytest.raises(StorageSwitchTimeout, match=r"card\.img did not appear within 0\.5 s"),
    ):
        mux.host()


def test_an_unreadable_status(tmp_path: Path) -> None:
    with serve(StorageMux(**mux_config(tmp_path))) as mux:
        (tmp_path / "mux-state").write_text("banana\n")
        with pytest.raises(
            StorageSwitchError, match=r"printed 'banana', which names none of host, dut, off"
        ):
            mux.status()


def test_off_without_a_command_is_refused(tmp_path: Path) -> None:
    with (
        serve(StorageMux(**mux_config(tmp_path, off_command=None))) as mux,
        pytest.raises(StorageModeError, match="no off_command"),
    ):
        mux.off()


def test_a_hanging_command_in_virtual_time(tmp_path: Path) -> None:
    config = DriverTestConfig(
        StorageMux,
        # no status command: the only process is the one that hangs (the kit's clock would
        # jump past a real command's timeout while it runs)
        driver_config=mux_config(
            tmp_path, dut_command="sleep 3600", status_command=None, timeout=120
        ),
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        with pytest.raises(StorageSwitchTimeout, match=r"within 120\.0 s"):
            test.runtime.run_to_completion(test.driver.dut())
        assert test.runtime.now() - start == pytest.approx(120)


def test_through_a_tls_exporter(tmp_path: Path) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    c = mux_config(tmp_path)
    config = parse_config(
        f"""\
name: sd-lab
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
export:
  sdmux:
    type: tether.drivers.storage.StorageMux
    config:
      path: {c["path"]}
      host_command: "{c["host_command"]}"
      dut_command: "{c["dut_command"]}"
      off_command: "exit 7"
      status_command: "{c["status_command"]}"
""",
        "sd-lab.yaml",
    )
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        dut.sdmux.host()
        assert dut.sdmux.status() == "host"
        with pytest.raises(StorageSwitchError, match="exited with status 7"):
            dut.sdmux.off()
        dut.sdmux.dut()
        assert (tmp_path / "mux-state").read_text() == "dut\n"


# -- UsbSdMux ---------------------------------------------------------------------------------


def test_usbsdmux_without_the_device_node(tmp_path: Path) -> None:
    sg = tmp_path / "sg-missing"
    driver = UsbSdMux(sg=str(sg), path=str(tmp_path / "card"), initial="off", model="classic")
    with (
        pytest.raises(StorageSwitchError, match=rf"USB-SD-Mux {sg}: switch off: no such device"),
        serve(driver),
    ):
        pass


def test_usbsdmux_on_a_node_that_is_not_a_mux(tmp_path: Path) -> None:
    """The library's SG_IO ioctl on a plain file fails (ENOTTY): a clear error, not a crash."""
    sg = tmp_path / "sg0"
    sg.write_bytes(b"")
    driver = UsbSdMux(sg=str(sg), path=str(tmp_path / "card"), initial="dut", model="classic")
    with (
        pytest.raises(StorageSwitchError, match=rf"USB-SD-Mux {sg}: switch to dut failed: "),
        serve(driver),
    ):
        pass


def test_usbsdmux_auto_model_needs_sysfs(tmp_path: Path) -> None:
    sg = tmp_path / "sg7"
    sg.write_bytes(b"")
    driver = UsbSdMux(sg=str(sg), path=str(tmp_path / "card"), initial="off")
    with (
        pytest.raises(StorageSwitchError, match=r"Could not determine type of USB-SD-Mux"),
        serve(driver),
    ):
        pass


class FakeUsbSdMuxDevice:
    """A fake of the usbsdmux library's device object (``UsbSdMuxClassic``/``Fast``): the same
    four methods, a mode in memory. Not hardware."""

    def __init__(self) -> None:
        self.mode = "off"
        self.calls: list[str] = []

    def get_mode(self) -> str:
        return self.mode

    def mode_host(self) -> None:
        self.calls.append("host")
        self.mode = "host"

    def mode_DUT(self) -> None:
        self.calls.append("dut")
        self.mode = "dut"

    def mode_disconnect(self) -> None:
        self.calls.append("off")
        self.mode = "off"


class UsbSdMuxOnAFake(UsbSdMux):
    """UsbSdMux with the library's device object replaced by :class:`FakeUsbSdMuxDevice`."""

    device: ClassVar[FakeUsbSdMuxDevice]

    def _open(self) -> Any:
        return self.device


def test_usbsdmux_switching_on_a_fake_device(tmp_path: Path) -> None:
    UsbSdMuxOnAFake.device = fake = FakeUsbSdMuxDevice()
    card = tmp_path / "card"
    card.write_bytes(b"\0" * 4096)
    with serve(UsbSdMuxOnAFake(sg="/dev/fake-sg", path=str(card))) as mux:
        assert mux.status() == "off"  # read from the device at start
        mux.host()
        mux.write(card, progress=False)
        mux.dut()
        assert fake.calls == ["host", "dut"] and mux.status() == "dut"
        fake.mode = "host"
        assert mux.status() == "host"


def test_usbsdmux_waits_for_the_card_in_virtual_time(tmp_path: Path) -> None:
    UsbSdMuxOnAFake.device = FakeUsbSdMuxDevice()
    card = tmp_path / "card"
    config = DriverTestConfig(
        UsbSdMuxOnAFake, driver_config={"sg": "/dev/fake-sg", "path": str(card), "timeout": 30}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        with pytest.raises(StorageSwitchTimeout, match=r"did not appear within 30\.0 s \(no card"):
            test.runtime.run_to_completion(test.driver.host())
        assert test.runtime.now() - start == pytest.approx(30, abs=0.1)

        async def card_arrives() -> None:
            await asyncio.sleep(5)
            card.write_bytes(b"")

        test.runtime.foreground_dispatcher.spawn(card_arrives())
        test.runtime.run_to_completion(test.driver.host())
        assert 5 <= test.runtime.now() - start - 30 < 5.2
