"""The pytest plugin puts a failing test's console output in its report and JUnit system-out,
and saves every console's session log (a real pty behind a PySerial driver)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import os
import pytest
from tether.drivers.composite import Composite
from tether.drivers.serial import PySerial
from tether.testing import serve


@pytest.fixture(scope="session")
def dut():
    master, slave = os.openpty()
    tree = Composite(children={"serial": PySerial(url=os.ttyname(slave))})
    with serve(tree) as client:
        client.master = master
        yield client
    os.close(master)
    os.close(slave)
"""

TESTS = """
import os


def say(dut, text):
    with dut.serial.open() as console:
        os.write(dut.master, text.encode())
        console.expect(text.strip())


def test_passes(dut):
    say(dut, "booting fine\\r\\n")


def test_fails(dut):
    say(dut, "kernel panic: not syncing\\r\\n")
    assert False, "the board panicked"
"""


def test_failing_test_carries_the_console_output(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess("--junitxml=report.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Captured stdout tether console serial*", "*kernel panic*"])
    cases = {
        case.get("name"): case for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    failed_out = "".join(el.text or "" for el in cases["test_fails"].iter("system-out"))
    assert "kernel panic: not syncing" in failed_out
    assert "booting fine" not in failed_out  # only what the failing test printed
    assert not list(cases["test_passes"].iter("system-out"))
    saved = (pytester.path / "tether-logs" / "serial.log").read_bytes()
    assert saved == b"booting fine\r\nkernel panic: not syncing\r\n"  # the whole session
