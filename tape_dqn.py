"""Double DQN with tape-based batching on a NeuroGym task.

    python tape_dqn.py experiments/perceptual_decision_making/tape_mpn.yaml [--seed N] [--out DIR] [--set key.sub=value]
"""
import signal
import sys

if __name__ == "__main__":
    # From the first moment a signal is only noted: importing jax takes seconds, and a
    # KeyboardInterrupt raised in there can be swallowed by a callback; cli_main acts on it.
    pending = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    from jaxenv import import_jax

    import_jax("tape_dqn.py")  # JAX's environment variables, checked in one line
    from cli import cli_main

    sys.exit(cli_main(sys.argv[1:], batching="tape", pending=pending))
