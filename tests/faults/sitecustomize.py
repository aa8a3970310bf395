"""Fault injection for tests/test_faults.py: put this folder on PYTHONPATH and set S5LRA_FAULT.

Python imports `sitecustomize` at start-up, so the faults below act inside a real `run_train.py` process, at the
moment they name, with no hook in the project's code:
- `kill-in-save:N`: the N-th `numpy.savez` (a checkpoint's state.npz) writes half its bytes, then the process
  sends itself SIGKILL.
- `raise-in-eval:N`: the N-th evaluation of a split raises RuntimeError.
- `oom-in-eval:N`: the N-th evaluation of a split runs a computation whose buffer (160 GB) XLA cannot allocate:
  XLA's own out-of-memory error.
- `slow-eval:N`: the N-th evaluation of a split first writes the file $S5LRA_FAULT_MARK, then sleeps 60 s.
"""

import os

fault, _, count = os.environ.get("S5LRA_FAULT", "").partition(":")
if fault:
    import io
    import signal
    import time
    from pathlib import Path

    import numpy as np

    calls = {"n": 0}

    def nth() -> bool:
        calls["n"] += 1
        return calls["n"] == int(count)

    if fault == "kill-in-save":
        savez = np.savez

        def killed_savez(file, *args, **kwargs):
            if not nth():
                return savez(file, *args, **kwargs)
            buf = io.BytesIO()
            savez(buf, *args, **kwargs)
            file.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        np.savez = killed_savez
    else:
        from s5lra.train import loop

        evaluate = loop.evaluate

        def faulty_evaluate(*args, **kwargs):
            if nth():
                if fault == "raise-in-eval":
                    raise RuntimeError("injected fault in evaluation")
                if fault == "oom-in-eval":
                    import jax
                    import jax.numpy as jnp

                    x = jnp.ones(200_000)
                    jax.jit(lambda x: jnp.sort(jnp.outer(x, x).ravel())[:1])(x).block_until_ready()
                Path(os.environ["S5LRA_FAULT_MARK"]).write_text("evaluating")
                time.sleep(60)
            return evaluate(*args, **kwargs)

        loop.evaluate = faulty_evaluate
