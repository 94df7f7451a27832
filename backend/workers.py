"""`ivrs backend` with IVRS_BACKEND_WORKERS > 1: that many backend processes on one port
(SO_REUSEPORT: the kernel spreads the connections among them), so the backend uses more than one
core. One Python process is the backend's limit at the morning peak (bench/: its event loop is
busy while the FastAGI server and the database have room).

PostgreSQL only: on SQLite the writers of one process queue in order (database.Sessions), and
processes would race for the database's one write lock. The workers share nothing else: console
sessions and audit entries are in the database, recording tickets are signed (stateless), and
the background look for recordings tolerates another process noting one first.

A worker that dies is started again; SIGTERM or SIGINT stops them all (each one gracefully)."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

import structlog

from backend.settings import BackendSettings

log = structlog.get_logger(__name__)

STOP_TIMEOUT_S = 30
RESTART_PAUSE_S = 1.0  # between restarts of a worker that keeps dying


def run_workers(settings: BackendSettings) -> None:
    if settings.database_url.startswith("sqlite"):
        raise SystemExit(
            "IVRS_BACKEND_WORKERS > 1 needs PostgreSQL: SQLite's writers must stay in one process"
        )
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked loop or pool
    stopping = threading.Event()

    def start(number: int) -> BaseProcess:
        worker = spawn.Process(target=_serve, args=(settings,), name=f"ivrs-backend-{number}")
        worker.start()
        return worker

    def stop(_signal: int, _frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    workers = [start(n) for n in range(settings.workers)]
    log.info("backend_workers_started", workers=len(workers), port=settings.port)
    try:
        while not stopping.wait(RESTART_PAUSE_S):
            for number, worker in enumerate(workers):
                if not worker.is_alive():
                    log.error("backend_worker_died", worker=number, exit_code=worker.exitcode)
                    workers[number] = start(number)
    finally:
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                worker.terminate()  # SIGTERM: aiohttp's graceful shutdown
        for worker in workers:
            worker.join(STOP_TIMEOUT_S)
            if worker.is_alive():
                worker.kill()
                worker.join()


def _serve(settings: BackendSettings) -> None:
    from aiohttp import web

    from backend.app import LISTEN_BACKLOG, serving_app
    from cli.logs import configure_logging

    configure_logging()
    web.run_app(
        serving_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=True,
        backlog=LISTEN_BACKLOG,
    )
