"""Worker processes for builds and generators that never outlive the process that started them.

Workers are spawned (forking a process that already runs JAX's threads can deadlock), ignore SIGINT (Ctrl-C
reaches the whole process group; the parent alone decides what happens) and watch their parent: when it is
gone (even killed by SIGKILL, when none of its cleanup runs) they exit instead of blocking on the task queue
forever. Leaving `worker_pool` in any way terminates and joins them. `stop_signals_raise` lets a command
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
def stop_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` and SIGINT KeyboardInterrupt in the main thread (elsewhere
    both are left alone). SIGINT too: a shell starts a script's background command with SIGINT ignored, and
    the command would then run on after a SIGINT; run_train.py acts on both the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
