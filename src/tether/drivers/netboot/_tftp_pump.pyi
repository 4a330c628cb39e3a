def pump(
    sock_fd: int,
    file_fd: int,
    size: int,
    blksize: int,
    windowsize: int,
    on_wire: int,
    final: int,
    /,
) -> tuple[int, bytes | None]: ...
