"""Double DQN with segment-based batching on a NeuroGym task.

    python segment_dqn.py experiments/perceptual_decision_making/segment_mpn_10.yaml [--seed N] [--out DIR] [--set key.sub=value]
"""
import sys

if __name__ == "__main__":
    try:  # importing jax takes a few seconds: Ctrl-C then is one line, not a traceback
        from training import cli_main
    except KeyboardInterrupt:
        print("segment_dqn.py: interrupted before the run started; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(cli_main(sys.argv[1:], batching="segment"))
