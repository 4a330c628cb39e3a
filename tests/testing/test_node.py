"""TestNode: children, properties, offers, bind requests, start args, affinity."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from tether import Driver, Interface, export
from tether.driver import AddChildError, NodeController, ServiceNotFound, StartArgs
from tether.errors import LifecycleError
from tether.testing import (
    DispatcherBound,
    DriverRuntime,
    DriverUnderTest,
    IncomingDirectoryServer,
    OutgoingDirectoryClient,
    StartArgsResult,
    TestNode,
)


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def test_children_properties_and_offers_are_recorded() -> None:
    root = TestNode("root", {"board": "rpi4"})
    controller = root.add_child("power", properties={"kind": "relay"}, offers=["tether.power"])
    assert isinstance(controller, NodeController)
    child = root.children["power"]
    assert isinstance(child, TestNode)
    assert child.properties == {"kind": "relay"}
    assert child.offers == ["tether.power"]
    assert root.properties == {"board": "rpi4"}
    child.add_child("port", properties={"n": "1"})
    assert root.child("power.port").properties == {"n": "1"}
    assert root.child("power.port").path == "power.port"
    assert "power" in repr(root)


def test_child_lookup_names_what_exists() -> None:
    root = TestNode()
    root.add_child("a")
    with pytest.raises(KeyError, match=r"no child 'b' \(children: \['a'\]\)"):
        root.child("b")


@pytest.mark.parametrize(
    ("name", "properties", "reason"),
    [
        ("dup", None, "name_already_exists"),
        ("", None, "unsupported_args"),
        ("a.b", None, "unsupported_args"),
        ("ok", {"k": 1}, "unsupported_args"),
    ],
)
def test_add_child_fails_like_the_framework(
    name: str, properties: dict[str, object] | None, reason: str
) -> None:
    root = TestNode()
    root.add_child("dup")
    with pytest.raises(AddChildError) as info:
        root.add_child(name, properties=properties)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert list(root.children) == ["dup"]


def test_removing_a_node_removes_its_subtree() -> None:
    root = TestNode()
    controller = root.add_child("a")
    root.children["a"].add_child("b").node.add_child("c")
    grandchild = root.child("a.b.c")
    controller.remove()
    assert root.children == {}
    assert grandchild.removed
    controller.remove()  # twice: no-op
    with pytest.raises(AddChildError, match="was removed"):
        grandchild.add_child("d")


def test_remove_children_and_bind_requests() -> None:
    root = TestNode()
    controller = root.add_child("a")
    controller.request_bind(driver="x")
    assert root.children["a"].bind_requests == [{"driver": "x"}]
    root.add_child("b")
    root.remove_children()
    assert root.children == {}


def test_create_start_args_and_serve_hands_out_both_ends() -> None:
    root = TestNode("board", {"site": "lab"})
    result = root.create_start_args_and_serve(config={"k": "v"})
    assert isinstance(result, StartArgsResult)
    args, server, client = result
    assert isinstance(args, StartArgs)
    assert isinstance(server, IncomingDirectoryServer)
    assert isinstance(client, OutgoingDirectoryClient)
    assert args.node is root
    assert args.node_name == "board"
    assert args.properties == {"site": "lab"}
    assert args.config == {"k": "v"}
    assert server.take() is args.incoming
    with pytest.raises(LifecycleError, match="served already"):
        server.take()
    assert "taken" in repr(server)
    again = root.create_start_args_and_serve()
    assert again.start_args.incoming is not args.incoming  # fresh directories every time


class Greeter(Interface):
    name = "test.greeter"

    async def greet(self, who: str) -> str:
        raise NotImplementedError


class Hello(Greeter, Driver):
    @export
    async def greet(self, who: str) -> str:
        self.logger.warning("greeting %s", who)
        return f"hello {who}"

    async def start(self) -> None:
        self.node.add_child("child", properties={"role": "demo"})


def test_the_outgoing_client_reaches_what_the_driver_offers(rt: DriverRuntime) -> None:
    node = TestNode("root")
    args, _, outgoing = node.create_start_args_and_serve()
    with pytest.raises(ServiceNotFound):
        outgoing.connect(Greeter)
    with DriverUnderTest(Hello) as dut:
        rt.run_to_completion(dut.start(args))
        assert outgoing.services() == [("test.greeter", "default")]
        assert rt.run_to_completion(outgoing.connect(Greeter).greet("you")) == "hello you"
    assert node.children["child"].properties == {"role": "demo"}


def test_driver_logs_reach_python_logging_without_a_sink(
    rt: DriverRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    node = TestNode("root")
    args, _, _ = node.create_start_args_and_serve()
    with DriverUnderTest(Hello) as dut:
        rt.run_to_completion(dut.start(args))
        with caplog.at_level(logging.WARNING, logger="tether.driver.root"):
            rt.run_to_completion(dut.driver.greet("logs"))
    assert [r.getMessage() for r in caplog.records] == ["greeting logs"]
    assert caplog.records[0].name == "tether.driver.root"


def test_driver_log_levels_follow_python_logging(
    rt: DriverRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    args, _, _ = TestNode("quiet").create_start_args_and_serve()
    assert args.logger is not None
    with caplog.at_level(logging.ERROR, logger="tether.driver.quiet"):
        args.logger.warning("dropped")
        assert not args.logger.isEnabledFor(logging.WARNING)
    assert caplog.records == []


class RecordingNode(TestNode):
    threads: list[int] = []

    def _new_child(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        RecordingNode.threads.append(threading.get_ident())
        return super()._new_child(*args, **kwargs)


def test_a_node_on_a_background_dispatcher_is_changed_there(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    node = DispatcherBound(bg, RecordingNode, "root")
    args, _, _ = node.sync_call(RecordingNode.create_start_args_and_serve)
    assert node.sync_call(lambda n: n.dispatcher) is bg
    with DriverUnderTest(Hello) as dut:  # on the foreground
        rt.run_to_completion(dut.start(args))
    assert RecordingNode.threads == [bg.thread.ident]
    assert node.sync_call(lambda n: list(n.children)) == ["child"]

    def remove_and_rebind(child_name: str) -> None:
        controller = NodeController(args.node.children[child_name])
        controller.request_bind(driver="again")
        controller.remove()

    async def from_foreground() -> None:
        remove_and_rebind("child")  # hops to the node's dispatcher, blocking briefly
        await asyncio.sleep(0)

    rt.run_to_completion(from_foreground())
    assert node.sync_call(lambda n: n.children) == {}
