"""The public names of each package (see ../shared/API.md); a change here is an API change."""

import tether
import tether.testing
import tether.wire


def test_top_level_names() -> None:
    for name in ["Driver", "DriverClient", "Interface", "export", "export_stream", "errors"]:
        assert name in tether.__all__ and hasattr(tether, name)


def test_every_public_name_exists() -> None:
    for module in (tether, tether.driver, tether.wire, tether.testing, tether.errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_serve_is_in_the_test_kit() -> None:
    assert "serve" in tether.testing.__all__
