"""``dut`` alone: the driver tree as a rich tree (names, interfaces, descriptions, methods)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from tether.driver import DriverClient

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
    text.append(client.name or "(root)", style="bold")
    interface = client.report.get("interface")
    if interface:
        text.append(f"  {interface} v{client.report.get('version', 0)}", style="cyan")
    if client.description:
        text.append(f"  {client.description}")
    if client.labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(client.labels.items()))
        text.append(f"  [{labels}]", style="dim")
    if client.methods:
        text.append("\n")
        text.append(", ".join(sorted(client.methods)), style="green")
    return text


def print_tree(root: DriverClient) -> None:
    """Print the tree to stdout (plain text when stdout is not a terminal)."""
    Console(highlight=False, soft_wrap=True).print(render_tree(root))
