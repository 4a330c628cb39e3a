"""The public names of each package (see ../shared/API.md); a change here is an API change."""

import tether
import tether.client
import tether.exporter
import tether.security
import tether.testing
import tether.wire


def test_top_level_names() -> None:
    for name in [
        "Driver",
        "DriverClient",
        "Interface",
        "connect",
        "export",
        "export_stream",
        "errors",
    ]:
        assert name in tether.__all__ and hasattr(tether, name)


def test_every_public_name_exists() -> None:
    modules = (
        tether,
        tether.driver,
        tether.wire,
        tether.testing,
        tether.errors,
        tether.exporter,
        tether.client,
        tether.security,
    )
    for module in modules:
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_serve_is_in_the_test_kit() -> None:
    assert "serve" in tether.testing.__all__


def test_connect_and_the_in_process_exporter_are_public() -> None:
    assert tether.connect is tether.client.connect
    for name in ("Exporter", "run_exporter_in_thread", "load_config", "init_lab_certs"):
        assert name in tether.exporter.__all__
