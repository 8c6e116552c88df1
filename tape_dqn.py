"""Double DQN with tape-based batching on a NeuroGym task.

    python tape_dqn.py experiments/perceptual_decision_making/tape_mpn.yaml [--seed N] [--out DIR] [--set key.sub=value]
"""
import sys

from training import cli_main

if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:], batching="tape"))
