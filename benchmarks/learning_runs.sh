#!/usr/bin/env bash
# Reproduces the README's learning results: 5 seeds per experiment (vmapped in one program on the
# jax backend), then the figures and the results table. About 20 minutes on a 2-core CPU.
#   bash benchmarks/learning_runs.sh            # run folders under results/ (OUT=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
for task in perceptual_decision_making delay_match_sample context_decision_making; do
  python tape_dqn.py experiments/$task/tape_mpn.yaml --seeds 5 --out "$OUT/$task/tape_mpn" --no-progress
done
for L in 10 50; do
  python segment_dqn.py experiments/perceptual_decision_making/segment_mpn_$L.yaml --seeds 5 \
    --out "$OUT/perceptual_decision_making/segment_mpn_$L" --no-progress
done
python -m plotting.compare "$OUT/perceptual_decision_making" --out figures/pdm_tape_vs_segment.png \
  --title "PerceptualDecisionMaking-v0: tape vs segment batching (exact MPN, 5 seeds)"
python -m plotting.compare "$OUT"/*/tape_mpn --out figures/tape_mpn_three_tasks.png --title "tape_mpn on three tasks (5 seeds)"
python -m plotting.psychometric "$OUT/perceptual_decision_making/tape_mpn/seed0" --out figures/pdm_psychometric.png
python -m plotting.table "$OUT"/*/* --out figures/results_table.md
