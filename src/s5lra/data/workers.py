"""Worker processes for builds and generators that never outlive the process that started them.

Workers are spawned (forking a process that already runs JAX's threads can deadlock), ignore SIGINT (Ctrl-C
reaches the whole process group; the parent alone decides what happens) and watch their parent: when it is
gone (even killed by SIGKILL, when none of its cleanup runs) they exit instead of blocking on the task queue
forever. Leaving `worker_pool` in any way terminates and joins them. `sigterm_as_interrupt` lets a command
line treat SIGTERM like Ctrl-C, so `finally` blocks (pool shutdown, temporary folders) run for both.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from typing import Iterator

WATCH_S = 0.5  # how often a worker checks that its parent still exists


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so the same cleanup runs."""

    signum = signal.SIGTERM


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_S)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="s5lra-watch-parent").start()


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator:
    """A multiprocessing Pool of `workers` spawned processes, joined on exit: closed when the block ends
    normally (idle workers exit on their own), terminated when it raises (a signal turned into one included)."""
    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` in the main thread (elsewhere it is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
