"""The ``dut`` fixture without a controller: ``TETHER_HOST`` (inside ``tether shell``),
``--tether-connect`` and ``--tether-exporter-config``; no device is one usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.exporter import run_exporter_in_thread

pytest_plugins = ["pytester"]

LAB = """
name: direct-lab
export:
  power: {type: tether.drivers.power.MockPower}
"""

TESTS = """
def test_power(dut):
    dut.power.on()
    assert dut.power.status() is True


def test_same_tree(dut):
    assert dut.power.status() is True
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    return path


def test_exporter_config_runs_the_lab_in_process(pytester: pytest.Pytester, lab: Path) -> None:
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess(f"--tether-exporter-config={lab}")
    result.assert_outcomes(passed=2)


def test_connect_and_tether_host(
    pytester: pytest.Pytester, lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_board=TESTS)
    with run_exporter_in_thread(lab) as running:
        result = pytester.runpytest_subprocess(f"--tether-connect={running.url}")
        result.assert_outcomes(passed=2)
        monkeypatch.setenv("TETHER_HOST", running.url)
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=2)


def test_no_device_is_one_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_HOST", raising=False)
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.str().count("the dut fixture needs a device") == 1
    assert "--tether-exporter-config FILE" in result.stderr.str()


def test_a_dut_fixture_of_the_tests_own_is_left_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TETHER_HOST", raising=False)
    pytester.makepyfile(
        test_own="import pytest\n\n@pytest.fixture\ndef dut():\n    return 1\n\n"
        "def test_it(dut):\n    assert dut == 1\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
