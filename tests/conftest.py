import os

# Several host devices so data-parallel tests can run on CPU; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


import jax  # noqa: E402  (after the environment above is set)
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache as jax_cache  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from s5lra.data import load_task  # noqa: E402

from helpers import GENERATE  # noqa: E402



@pytest.fixture(scope="module")
def shared_compilation_cache(tmp_path_factory):
    """The tiny models recur in many runs: compile each once (in-process and in subprocesses alike)."""
    path = str(tmp_path_factory.getbasetemp() / "jax-cache")
    previous = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    env = {"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax_cache.reset_cache()
        yield
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    jax_cache.reset_cache()


@pytest.fixture(scope="session")
def listops_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("listops")
    load_task("listops", root, generate=OmegaConf.to_container(OmegaConf.create(GENERATE.replace(":", ": "))),
              max_len=20)
    return root
