"""The plugin's factory fixtures share one helper: products closed at teardown, newest first."""

from __future__ import annotations

import pytest

from tether.testing.pytest_plugin import _closing_factory


class Product:
    def __init__(self, name: str, closed: list[str], *, fail: bool = False) -> None:
        self.name, self.closed, self.fail = name, closed, fail

    def close(self) -> None:
        self.closed.append(self.name)
        if self.fail:
            raise RuntimeError(f"{self.name} failed to close")


def test_products_are_closed_newest_first_even_when_one_fails() -> None:
    closed: list[str] = []
    fixture = _closing_factory(lambda name, **kw: Product(name, closed, **kw))
    make = next(fixture)
    made = [make("a"), make("b", fail=True), make("c")]
    assert [p.name for p in made] == ["a", "b", "c"] and closed == []
    with pytest.raises(RuntimeError, match="b failed to close"):
        next(fixture)
    assert closed == ["c", "b", "a"]
