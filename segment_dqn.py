"""Double DQN with segment-based batching on a NeuroGym task.

    python segment_dqn.py experiments/perceptual_decision_making/segment_mpn_10.yaml [--seed N] [--out DIR] [--set key.sub=value]
"""
import sys

from training import cli_main

if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:], batching="segment"))
