"""tether's pytest plugin (entry point ``pytest11: tether``).

Importing this module has no side effects: it defines hooks and fixtures only, and imports the
test kit lazily inside the fixtures, so every pytest run in an environment with tether installed
stays fast.

Sections:

- *Driver test kit fixtures*: ``driver_runtime`` and factories for the kit's building blocks.
- (reserved) *Lab fixtures*: ``--tether-selector`` options and the ``dut`` fixture live in their
  own section below, added separately.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from tether.driver import Driver

    from ._dispatcher import BackgroundDispatcher
    from ._driver_under_test import DriverUnderTest
    from ._fixtures import BackgroundDriverTest, DriverTestConfig, ForegroundDriverTest
    from ._runtime import DriverRuntime

__all__ = [
    "background_dispatcher",
    "background_driver_test",
    "driver_runtime",
    "driver_under_test",
    "foreground_driver_test",
]


# =================================================================================================
# Driver test kit fixtures
# =================================================================================================


@pytest.fixture
def driver_runtime() -> Iterator[DriverRuntime]:
    """A fresh :class:`~tether.testing.DriverRuntime`, closed (all threads joined) afterwards."""
    from tether.testing import DriverRuntime

    with DriverRuntime() as runtime:
        yield runtime


@pytest.fixture
def background_dispatcher(
    driver_runtime: DriverRuntime,
) -> Callable[[], BackgroundDispatcher]:
    """Factory: ``background_dispatcher()`` starts a background dispatcher on the runtime."""
    return driver_runtime.start_background_dispatcher


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def _closing_factory(build: Callable[..., C]) -> Iterator[Callable[..., C]]:
    """The body of every factory fixture: yield ``build`` as a factory whose products are
    closed at teardown, newest first (all of them, even when one close raises)."""
    with contextlib.ExitStack() as stack:

        def make(*args: Any, **kwargs: Any) -> C:
            product = build(*args, **kwargs)
            stack.callback(product.close)
            return product

        yield make


@pytest.fixture
def driver_under_test(
    driver_runtime: DriverRuntime,
) -> Iterator[Callable[..., DriverUnderTest[Any]]]:
    """Factory: ``driver_under_test(DriverClass, **config)`` makes a foreground
    :class:`~tether.testing.DriverUnderTest`; each one is closed (stopped) at teardown."""
    from tether.testing import DriverUnderTest

    def build(driver_class: type[Driver], /, **config: Any) -> DriverUnderTest[Any]:
        return DriverUnderTest(driver_class, **config)

    yield from _closing_factory(build)


@pytest.fixture
def foreground_driver_test(
    driver_runtime: DriverRuntime,
) -> Iterator[Callable[[DriverTestConfig[Any]], ForegroundDriverTest[Any]]]:
    """Factory: ``foreground_driver_test(config)`` makes a
    :class:`~tether.testing.ForegroundDriverTest` on the runtime, closed at teardown."""
    from tether.testing import ForegroundDriverTest

    def build(config: DriverTestConfig[Any]) -> ForegroundDriverTest[Any]:
        return ForegroundDriverTest(config, runtime=driver_runtime)

    yield from _closing_factory(build)


@pytest.fixture
def background_driver_test(
    driver_runtime: DriverRuntime,
) -> Iterator[Callable[[DriverTestConfig[Any]], BackgroundDriverTest[Any]]]:
    """Factory: ``background_driver_test(config)`` makes a
    :class:`~tether.testing.BackgroundDriverTest` on the runtime, closed at teardown."""
    from tether.testing import BackgroundDriverTest

    def build(config: DriverTestConfig[Any]) -> BackgroundDriverTest[Any]:
        return BackgroundDriverTest(config, runtime=driver_runtime)

    yield from _closing_factory(build)


# =================================================================================================
# Lab fixtures (--tether-selector, dut): reserved for a separate change.
# =================================================================================================
