"""Several gateway or worker processes under one command: ``serve --workers N``, ``worker --processes N``.

The parent starts N children, each the same command with one process (gateways bind the same
port with SO_REUSEPORT, so the kernel spreads connections over them), restarts a child that dies,
and on SIGTERM or SIGINT passes the signal on and waits for them: aiohttp finishes the requests in
flight, a worker finishes its cycle. Children are whole processes of their own (each with its
database pool and caches), so nothing is shared but PostgreSQL and Redis.
"""
from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
import time

import structlog

log = structlog.get_logger("processes")
PR_SET_PDEATHSIG = 1
RESTART_PAUSE = 1.0
STOP_GRACE = 30.0


STOPS = {signal.SIGTERM, signal.SIGINT}


def _child_setup(parent: int):
    """The child's first step before it runs, with the stop signals still held (see ``_start``):
    their default action again, then Linux's promise to send SIGTERM if the parent dies, even by
    SIGKILL, so that no gateway is left serving the port on its own. A parent that died before
    that promise was asked for sends nothing, so the child stops at once; a stop that arrived in
    between is delivered when the signals are let through, and ends the child."""
    def arrange() -> None:
        for signum in STOPS:
            signal.signal(signum, signal.SIG_DFL)
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:  # not Linux: the parent's own stop still reaches them
            pass
        if os.getppid() != parent:
            os._exit(1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)

    return arrange


async def settle_heap(_app=None) -> None:
    """Once a serving process has loaded and connected everything: what lives now (modules,
    routes, schemas, pools; about 117,000 objects) lives as long as the process, so it is moved
    out of the garbage collector's reach (``gc.freeze``). A full collection of that heap took
    70 ms on the bench machine, a pause that every request in flight waited for (the till's p99);
    afterwards collections look only at what requests create."""
    gc.collect()
    gc.freeze()


def default_count() -> int:
    return os.cpu_count() or 1


def supervise(argv: list[str], count: int) -> int:
    """Run ``count`` copies of ``loyalty <argv>`` until told to stop; returns the exit code."""
    stopping = False
    children: list[subprocess.Popen] = []

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def start(slot: int) -> None:
        """Start a child into ``slot`` with the stop signals held, so that a stop arriving
        meanwhile is handled once the child is in ``children`` and reaches it too."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        try:
            child = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv],
                                     preexec_fn=_child_setup(os.getpid()))
            if slot < len(children):
                children[slot] = child
            else:
                children.append(child)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        if not stopping:
            start(slot)
    log.info("processes.started", count=count, pids=[child.pid for child in children])
    while not stopping:
        for slot, child in enumerate(children):
            if child.poll() is not None and not stopping:
                log.warning("processes.restart", pid=child.pid, exit_code=child.returncode)
                time.sleep(RESTART_PAUSE)
                if not stopping:
                    start(slot)
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
