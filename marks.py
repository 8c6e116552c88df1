"""Start-up timing marks: with MPN_DQN_TIMING=1 the entry points and the driver print
`MPN_DQN_TIMING <unix time> <label>` lines to stderr at the steps of the start-up (what
benchmarks/coldstart.py reads); otherwise nothing. Imports nothing heavy, so it can mark the
moment before jax is imported."""
import os
import sys
import time

ON = os.environ.get("MPN_DQN_TIMING") == "1"


def mark(label: str, at: float | None = None) -> None:
    """Print one mark (at: a time.time() value, default now) when MPN_DQN_TIMING=1."""
    if ON:
        print(f"MPN_DQN_TIMING {time.time() if at is None else at:.6f} {label}", file=sys.stderr, flush=True)
