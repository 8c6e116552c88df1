"""Results table from run folders: final performance (mean and 95% bootstrap CI over seeds) and the
env steps and wall time each seed took to first reach a target performance.

    python -m plotting.table RUN_DIR... [--target 0.85] [--out TABLE.md]

Targets default to each task's target in the task table (collector/tasks/__init__.py: e.g.
PerceptualDecisionMaking 0.85, DelayMatchSample 0.95, ContextDecisionMaking 0.85). "Reached" uses the periodic greedy evaluations
in metrics.csv; wall time includes compilation. Steps and seconds are averaged over the seeds that
reached the target, and the count of those seeds is given.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from collector.tasks import TASK_META
from plotting.common import PlotError, bootstrap_ci, cli_error, find_runs, group_runs, load_run
from oneline import OneLineParser

PROG = "python -m plotting.table"
TARGETS = {t: m.target for t, m in TASK_META.items()}  # each task's default target (the task table)


def first_reach(metrics: dict, target: float):
    """(env_steps, wall_s) of the first evaluation at or above target, or None."""
    hit = np.flatnonzero(metrics["eval_performance"] >= target)
    if hit.size == 0:
        return None
    i = hit[0]
    return float(metrics["env_steps"][i]), float(metrics["wall_s"][i])


def _fmt_ci(values, digits=3) -> str:
    mean, lo, hi = (float(x[0]) for x in bootstrap_ci(np.asarray(values, float)[:, None]))
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table_rows(runs: list[dict], target: float | None = None) -> list[dict]:
    """One dict per (task, group) with the table's figures."""
    rows = []
    for task, groups in group_runs(runs).items():
        goal = target if target is not None else TARGETS.get(task)
        for label, members in groups.items():
            finals = [r["summary"]["final_eval_performance"] for r in members if r["summary"]]
            reach = [first_reach(r["metrics"], goal) for r in members] if goal is not None else []
            got = [x for x in reach if x is not None]
            rows.append(dict(
                task=task, group=label, seeds=len(members), target=goal,
                final=_fmt_ci(finals) if finals else "running",
                final_trials=min((r["summary"].get("final_eval_trials", 0) for r in members if r["summary"]), default=0),
                reached=f"{len(got)}/{len(members)}",
                steps=_fmt_ci([g[0] for g in got], 0) if got else "-",
                wall=_fmt_ci([g[1] for g in got], 1) if got else "-",
                program=_program(members),
            ))
    return rows


def _program(members: list[dict]) -> str:
    """How the wall times were taken: seeds trained side by side in one program share its clock."""
    n = {r["summary"].get("seeds_in_program") for r in members if r["summary"]}
    if n == {1}:
        return "1 seed per program"
    if None in n:
        return "not recorded"
    return " / ".join(f"{k} seeds vmapped" for k in sorted(n))


def markdown(rows: list[dict]) -> str:
    head = ("| task | runs | seeds | final performance, mean [95% CI] | target | reached | env steps to target "
            "| wall s to target | wall time of |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['group']} | {r['seeds']} | {r['final']} ({r['final_trials']} trials) | "
            f"{r['target']} | {r['reached']} | {r['steps']} | {r['wall']} | {r['program']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, or folders of run folders")
    p.add_argument("--target", type=float, help="one target for every task (default: the per-task goals)")
    p.add_argument("--out", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    try:
        runs = [load_run(d) for d in find_runs([Path(x) for x in args.runs])]
        text = markdown(table_rows(runs, args.target))
    except PlotError as e:
        return cli_error(PROG, str(e))
    if args.out:
        try:
            Path(args.out).write_text(text)
        except OSError as e:
            return cli_error(PROG, f"--out {args.out}: cannot write it: {e.strerror or e}")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
