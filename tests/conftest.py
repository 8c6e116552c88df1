"""Test-session settings: one persistent XLA compilation cache shared by this process and every
entry point the tests start, so that the same tiny program is compiled once per session."""
import os
import tempfile

import jax

_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="mpn-dqn-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def background_run(tmp_path_factory, name: str, experiment: str, args: list):
    """Generator for a module-scoped fixture: start `tape_dqn.py experiment --out <tmp>/run args`
    at once, so that it trains alongside the module's tests that do not need it; yields
    (out, process) and kills the process at the end if nothing waited for it."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path_factory.mktemp(name) / "run"
    proc = subprocess.Popen(
        [sys.executable, "tape_dqn.py", experiment, "--out", str(out), *args],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield out, proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
