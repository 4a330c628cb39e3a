"""``dut`` alone: the driver tree as a rich tree (names, interfaces, descriptions, methods)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from tether.driver import DriverClient

from ._safe import printable

__all__ = ["print_tree", "render_tree"]


def render_tree(root: DriverClient) -> Tree:
    """The client tree as a :class:`rich.tree.Tree`."""
    tree = Tree(_label(root), guide_style="dim")
    _add_children(tree, root)
    return tree


def _add_children(branch: Tree, client: DriverClient) -> None:
    for child in client.children.values():
        _add_children(branch.add(_label(child)), child)


def _label(client: DriverClient) -> Text:
    text = Text()
    # Everything here comes from the exporter: escaped, and appended as plain text.
    text.append(printable(client.name or "(root)", newlines=False), style="bold")
    interface = client.report.get("interface")
    if interface:
        version = client.report.get("version", 0)
        text.append(printable(f"  {interface} v{version}", newlines=False), style="cyan")
    if client.description:
        text.append(printable(f"  {client.description}"))
    if client.labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(client.labels.items()))
        text.append(printable(f"  [{labels}]", newlines=False), style="dim")
    if client.methods:
        text.append("\n")
        text.append(printable(", ".join(sorted(client.methods)), newlines=False), style="green")
    return text


def print_tree(root: DriverClient) -> None:
    """Print the tree to stdout (plain text when stdout is not a terminal)."""
    Console(highlight=False, soft_wrap=True).print(render_tree(root))
