"""`serve --processes N`: N full hub processes on one host, sharing one listening port.

One Python process serves about one core. Each child is a complete member of the store
(its own hub id, lease and epoch, status file and metrics port); the kernel spreads new
connections across them (SO_REUSEPORT). The parent only supervises: it starts them, waits
until each serves, forwards SIGTERM/SIGINT, restarts one that dies, and exits when all
have stopped. PostgreSQL only: SQLite takes a single hub.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from cortexctl.addresses import split_address
from cortexctl.config import Settings
from cortexctl.core.clock import Deadline
from cortexctl.errors import EXIT_FAILED, CortexError, InvalidArgument, Unavailable
from cortexctl.hub.atomic import write_atomic

log = logging.getLogger("cortexctl.hub")
START_TIMEOUT_S = 120.0
RESTART_DELAY_S = 1.0
MAX_PROCESSES = 64


def suffixed(path: Path | None, instance: int) -> Path | None:
    """``status.json`` -> ``status.json.1`` for process 1 (process 0 keeps the name)."""
    if path is None or instance == 0:
        return path
    return path.with_name(f"{path.name}.{instance}")


def metrics_listen(listen: str, instance: int) -> str:
    """Each process's metrics port: the configured one plus the process number."""
    if not listen:
        return ""
    host, port = split_address(listen)
    return f"{host}:{port + instance if port else 0}"


def check(settings: Settings, processes: int) -> None:
    if not 1 <= processes <= MAX_PROCESSES:
        raise InvalidArgument(f"--processes must be between 1 and {MAX_PROCESSES}")
    if processes > 1 and make_url(settings.database_url).get_backend_name() != "postgresql":
        raise InvalidArgument(
            "--processes needs PostgreSQL: several hub processes share one store, and "
            "SQLite takes one hub; set store.database_url to postgresql+psycopg://..."
        )


def _reserve_port(listen: str) -> tuple[str, socket.socket | None]:
    """A concrete address for all children: port 0 becomes one free port, held (bound with
    SO_REUSEPORT, never listening) until they have all bound it too."""
    host, port = split_address(listen)
    if port:
        return listen, None
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), 0))
    chosen = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    return f"{shown}:{chosen}", sock


def _child(settings: Settings, opts: Any) -> None:  # runs in a fresh interpreter (spawn)
    from cortexctl.hub.server import serve
    from cortexctl.logs import setup_logging

    setup_logging(settings.log.level, settings.log.format)
    # The parent forwards SIGTERM; a Ctrl-C on the terminal reaches every process anyway.
    try:
        serve(settings, opts)
    except CortexError as err:
        log.error("hub process %d: %s", opts.instance, err)
        raise SystemExit(err.exit_code) from None


def supervise(settings: Settings, opts: Any) -> None:
    """Start ``opts.processes`` hub processes and supervise them until SIGTERM."""
    check(settings, opts.processes)
    listen, held = _reserve_port(opts.listen)
    ready_dir = settings.data_dir / "processes"
    ready_dir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def child_opts(instance: int) -> Any:
        return replace(
            opts,
            listen=listen,
            instance=instance,
            ready_file=ready_dir / f"ready.{instance}.json",
            status_file=suffixed(opts.status_file, instance),
            metrics_listen=metrics_listen(opts.metrics_listen, instance),
        )

    def start(instance: int) -> BaseProcess:
        child = child_opts(instance)
        assert child.ready_file is not None
        child.ready_file.unlink(missing_ok=True)
        process = context.Process(
            target=_child, args=(settings, child), name=f"cortex-hub-{instance}"
        )
        process.start()
        return process

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in children.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = {instance: start(instance) for instance in range(opts.processes)}
    try:
        infos = _wait_ready(children, child_opts, lambda: stopping)
    finally:
        if held is not None:
            held.close()
    if infos is None:  # stopped, or a child failed to start: the others are stopped too
        on_signal(signal.SIGTERM, None)
        codes = [_join(process) for process in children.values()]
        raise SystemExit(next((code for code in codes if code), EXIT_FAILED if not stopping else 0))
    log.info(
        "%d hub processes serving on %s: %s",
        len(infos),
        listen,
        ", ".join(str(info["hub_id"]) for info in infos),
    )
    if opts.ready_file is not None:
        document = {
            "address": listen,
            "hub_id": infos[0]["hub_id"],
            "hub_ids": [info["hub_id"] for info in infos],
            "pid": os.getpid(),
            "pids": [info["pid"] for info in infos],
        }
        write_atomic(opts.ready_file, json.dumps(document) + "\n")
    while not stopping:
        for instance, process in list(children.items()):
            if stopping or process.is_alive():
                continue
            log.error(
                "hub process %d (pid %s) exited with %s; restarting it",
                instance,
                process.pid,
                process.exitcode,
            )
            time.sleep(RESTART_DELAY_S)
            if not stopping:
                children[instance] = start(instance)
        time.sleep(0.2)
    for process in children.values():
        _join(process)
    log.info("all hub processes stopped")


def _wait_ready(
    children: dict[int, BaseProcess], child_opts: Any, stopped: Any
) -> list[dict[str, Any]] | None:
    deadline = Deadline.after(START_TIMEOUT_S)
    infos: dict[int, dict[str, Any]] = {}
    while len(infos) < len(children):
        if stopped() or deadline.passed():
            return None
        for instance, process in children.items():
            if instance in infos:
                continue
            path = child_opts(instance).ready_file
            try:
                infos[instance] = json.loads(path.read_text())
                continue
            except (OSError, ValueError):
                pass
            if not process.is_alive():
                log.error("hub process %d exited (%s) before serving", instance, process.exitcode)
                return None
        time.sleep(0.05)
    return [infos[instance] for instance in sorted(infos)]


def _join(process: BaseProcess) -> int:
    process.join(60)
    if process.is_alive():
        raise Unavailable(f"hub process {process.name} did not stop within 60s")
    return int(process.exitcode or 0)
