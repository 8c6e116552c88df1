#!/usr/bin/env bash
# Reproduces the README's learning results, figures and tables (about 70 minutes on a 2-core CPU).
#   bash benchmarks/learning_runs.sh             # run folders under results/ (OUT=... to change)
#   PART=targets bash benchmarks/learning_runs.sh   # only part 1; PART=compare: only part 2
#
# Every run starts with an empty XLA compile cache, so wall times include the whole compilation.
# 1. targets: the default tape_mpn experiment of each task, one seed per program, seeds 0-4:
#    the env steps and wall time a user sees.
# 2. compare: 5 seeds vmapped in one program per experiment, the same env steps and updates for all:
#    tape vs the segment baseline (R2D2 and DRQN forms, L = 10, 20, 50), and the ablations
#    (memory reset per episode instead of per trial; mpn_pre and gru instead of mpn).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
PART=${PART:-all}
TASKS="perceptual_decision_making delay_match_sample context_decision_making"
run() {  # run OUT_DIR SCRIPT ARGS...: skip runs already finished, so the script can be re-run
  local out=$1; shift
  if [ -f "$out/summary.json" ] || [ -f "$out/seed4/summary.json" ]; then echo "have $out"; return; fi
  rm -rf "$out"
  # an empty compile cache for every run, so that every wall time includes the whole compilation
  local cache; cache=$(mktemp -d)
  JAX_COMPILATION_CACHE_DIR=$cache python "$@" --out "$out" --no-progress
  rm -rf "$cache"
}

if [ "$PART" = all ] || [ "$PART" = targets ]; then
  for task in $TASKS; do
    for seed in 0 1 2 3 4; do
      run "$OUT/targets/$task/seed$seed" tape_dqn.py experiments/$task/tape_mpn.yaml --seed $seed
    done
  done
  python -m plotting.table "$OUT"/targets --out figures/results_targets.md
  python -m plotting.compare "$OUT"/targets/* --out figures/tape_mpn_three_tasks.png --title "tape_mpn, default configs (5 seeds)"
  python -m plotting.psychometric "$OUT/targets/perceptual_decision_making/seed0" --out figures/pdm_psychometric.png
fi

if [ "$PART" = all ] || [ "$PART" = compare ]; then
  for task in $TASKS; do
    C="$OUT/compare/$task"
    run "$C/tape_mpn" tape_dqn.py experiments/$task/tape_mpn.yaml --seeds 5
    for L in 10 20 50; do
      run "$C/segment_mpn_$L" segment_dqn.py experiments/$task/segment_mpn_$L.yaml --seeds 5
      run "$C/segment_mpn_${L}_drqn" segment_dqn.py experiments/$task/segment_mpn_${L}_drqn.yaml --seeds 5
    done
    run "$C/tape_mpn_reset_per_episode" tape_dqn.py experiments/$task/tape_mpn.yaml --seeds 5 \
      --set episode.reset_memory_on_trial=false
    run "$C/tape_mpn_pre" tape_dqn.py experiments/$task/tape_mpn_pre.yaml --seeds 5
    run "$C/tape_gru" tape_dqn.py experiments/$task/tape_gru.yaml --seeds 5
    short=$(echo "$task" | sed 's/perceptual_decision_making/pdm/; s/delay_match_sample/dms/; s/context_decision_making/cdm/')
    python -m plotting.compare "$C"/tape_mpn "$C"/segment_mpn_* --out figures/${short}_tape_vs_segment.png \
      --title "$task: tape vs segment batching (exact MPN, 5 seeds)"
    python -m plotting.compare "$C"/tape_mpn "$C"/tape_mpn_reset_per_episode "$C"/tape_mpn_pre "$C"/tape_gru \
      --out figures/${short}_ablations.png --title "$task: ablations (5 seeds)"
  done
  python -m plotting.table "$OUT"/compare --out figures/results_compare.md
fi
