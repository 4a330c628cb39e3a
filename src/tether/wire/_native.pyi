def send_then_poll(
    fd: int,
    data: bytes | bytearray | memoryview,
    poll_fd: int,
    spin_ns: int,
    counts: list[int],
    share: bool = False,
    block_ns: int = 0,
    /,
) -> int: ...
