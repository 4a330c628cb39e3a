"""``run_exporter_in_thread``: a whole exporter on a loop thread of this process.

For ``tether shell --exporter-config`` and tests: the exporter listens on a unix socket in a
private temporary directory (or where asked), and clients connect to it like to any other.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tether.security import generate_token, hash_token
from tether.wire import Address, LoopThread, tune_heap

from ._config import ExporterConfig, load_config
from ._exporter import Exporter

__all__ = ["RunningExporter", "run_exporter_in_thread"]


@dataclass(slots=True)
class RunningExporter:
    """An exporter running on a thread of this process.

    Attributes:
        url: the first address it listens on; pass it to :func:`tether.connect`.
        urls: every address it listens on.
        token: the bearer token to present, or ``None`` when none is needed.
        exporter: the :class:`Exporter` (its methods run on ``loop_thread``).
        loop_thread: the loop the exporter runs on (``loop_thread.run(coro)``).
    """

    url: str
    token: str | None
    exporter: Exporter
    loop_thread: LoopThread
    urls: list[str] = field(default_factory=list)


@contextmanager
def run_exporter_in_thread(
    config_or_path: ExporterConfig | str | Path,
    listen: str | Address | Sequence[str | Address] | None = None,
) -> Iterator[RunningExporter]:
    """Run an exporter on a background loop thread for the duration of the ``with`` block.

    The config's own ``listen`` addresses are not used (a shell must not take the lab's
    port). When the config requires tokens, a fresh token is made and accepted for this run
    only, and returned as ``.token``.

    Args:
        config_or_path: a config, or the path of a YAML config file.
        listen: address(es) to listen on; default: ``unix://`` socket in a private
            temporary directory (removed at exit).

    Yields:
        A :class:`RunningExporter` with ``.url`` and ``.token``.

    Raises:
        ConfigError: the config is invalid (file, line, key path) or TLS files are wrong.
        OSError: an address cannot be bound.
    """
    tune_heap()
    config = (
        config_or_path
        if isinstance(config_or_path, ExporterConfig)
        else load_config(config_or_path)
    )
    token = generate_token() if config.tokens is not None else None
    temp_dir: str | None = None
    if listen is None:
        temp_dir = tempfile.mkdtemp(prefix="tether-exporter-")
        addresses: list[str | Address] = [f"unix://{temp_dir}/exporter.sock"]
    elif isinstance(listen, str | Address):
        addresses = [listen]
    else:
        addresses = list(listen)
    loop_thread = LoopThread(f"tether-exporter-{config.name}")
    exporter: Exporter | None = None
    try:

        async def start() -> Exporter:
            running = Exporter(config, extra_token_hashes=[hash_token(token)] if token else [])
            await running.start()
            try:
                for address in addresses:
                    await running.listen(address)
            except BaseException:
                await running.aclose()
                raise
            return running

        exporter = loop_thread.run(start())
        yield RunningExporter(exporter.urls[0], token, exporter, loop_thread, list(exporter.urls))
    finally:
        try:
            if exporter is not None:
                loop_thread.run(exporter.aclose())
        finally:
            loop_thread.close()
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
