"""Plotting tools for run folders: `python -m plotting.compare` (learning curves across groups and
seeds) and `python -m plotting.psychometric` (choice curve of a trained PerceptualDecisionMaking
run). Shared loading, grouping and statistics helpers live in plotting/common.py."""
