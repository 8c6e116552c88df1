"""JAX's own environment variables, checked before anything runs: a value JAX rejects at import
(JAX_NUM_CPU_DEVICES=abc) or a platform this machine lacks (JAX_PLATFORMS=gpu) is one line naming
the variable instead of a traceback. Imports nothing heavy until `import_jax` is called."""
from __future__ import annotations

import os
import re
import sys


def _variable(message: str) -> str:
    """The environment variable behind one of JAX's messages ('... JAX flag jax_num_cpu_devices')."""
    found = re.search(r"flag (jax_\w+)", message)
    if found:
        return found.group(1).upper()
    return "JAX_PLATFORMS" if "backend" in message.lower() or "platform" in message.lower() else "a JAX variable"


def _refuse(prog: str, e: Exception):
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    name = _variable(text)
    value = os.environ.get(name)
    shown = f"{name}={value!r}" if value is not None else name
    print(f"{prog}: error: environment variable {shown}: {text[:200]}", file=sys.stderr)
    sys.exit(2)


def import_jax(prog: str, start: bool = True):
    """`import jax` and (start) its backend; on a value JAX refuses, print one line and exit 2.
    start=False for a program that must call jax.distributed.initialize first (start_backend
    afterwards)."""
    try:
        import jax
    except (ValueError, RuntimeError) as e:
        _refuse(prog, e)
    if start:
        start_backend(prog)
    return jax


def start_backend(prog: str) -> None:
    """Start JAX's backend (jax.devices()); a platform this machine lacks is one line, exit 2."""
    import jax

    try:
        jax.devices()
    except (ValueError, RuntimeError) as e:
        _refuse(prog, e)
