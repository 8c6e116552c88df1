"""Learning curves of several runs, grouped by batching mode, memory model and segment settings.

    python -m plotting.compare RUN_DIR... --out FIG.png [--title T]

Each RUN_DIR is a run folder or a folder of run folders (e.g. the DIR of `--seeds N`, holding
seed0/, seed1/, ...). Left: greedy evaluation performance against env steps; right: against wall
time. One curve per group: the mean over seeds with a 95% percentile-bootstrap band (seeds aligned
on env_steps; for wall time, the mean wall_s of each row index across seeds). Dashed lines: the
task's ideal-observer ceiling and random-policy baseline. Runs of several tasks: one row per task.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from collector.tasks import TASK_META
from oneline import OneLineParser
from plotting.common import (
    TASK_BASELINES, PlotError, bootstrap_ci, check_figure, cli_error, find_runs, group_runs, load_run, use_agg,
)

PROG = "python -m plotting.compare"


def curve_on_steps(runs: list[dict]):
    """(env_steps [P], values [seeds, P]) of eval_performance aligned on env_steps (NaN where a seed
    has no row at that step, e.g. an unfinished run)."""
    steps = np.unique(np.concatenate([r["metrics"]["env_steps"] for r in runs]))
    values = np.full((len(runs), steps.size), np.nan)
    for i, r in enumerate(runs):
        m = r["metrics"]
        values[i, np.searchsorted(steps, m["env_steps"])] = m["eval_performance"]
    return steps, values


def curve_on_wall(runs: list[dict]):
    """(mean wall_s per row index [P], values [seeds, P]) of eval_performance by row index."""
    n = max(r["metrics"]["wall_s"].size for r in runs)
    wall = np.full((len(runs), n), np.nan)
    values = np.full((len(runs), n), np.nan)
    for i, r in enumerate(runs):
        m = r["metrics"]
        wall[i, : m["wall_s"].size] = m["wall_s"]
        values[i, : m["eval_performance"].size] = m["eval_performance"]
    with np.errstate(invalid="ignore"):
        mean_wall = np.nanmean(wall, 0)
    return mean_wall, values


def plot(groups: dict[str, dict[str, list[dict]]], out: Path, title: str | None = None) -> Path:
    """Draw the figure for {task: {label: [runs]}} (see common.group_runs) and save it to out."""
    use_agg()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    tasks = list(groups)
    labels = sorted({label for g in groups.values() for label in g})
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.0 * len(tasks) + 0.6), squeeze=False,
                             sharey=True, constrained_layout=True)
    handles: dict[str, Line2D] = {}
    for row, task in enumerate(tasks):
        ax_s, ax_w = axes[row]
        for label, runs in groups[task].items():
            color = colors[label]
            n = len(runs)
            name = f"{label} (n={n})"
            for ax, (x, values) in ((ax_s, curve_on_steps(runs)), (ax_w, curve_on_wall(runs))):
                mean, lo, hi = bootstrap_ci(values)
                ok = ~np.isnan(mean) & ~np.isnan(x)
                line, = ax.plot(x[ok], mean[ok], color=color, lw=1.8, marker="o", ms=3)
                if n > 1:
                    ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.2, lw=0)
            handles.setdefault(name, line)
        ref = TASK_BASELINES.get(task)
        for ax in (ax_s, ax_w):
            if ref:
                ax.axhline(ref[1], color="black", ls="--", lw=1.0)
                ax.axhline(ref[0], color="0.5", ls="--", lw=1.0)
                for y, text, color in ((ref[1], f"{TASK_META[task].ceiling_by} {ref[1]:.3f}", "black"),
                                       (ref[0], f"random {ref[0]:.3f}", "0.35")):
                    ax.text(0.01, y, text, transform=ax.get_yaxis_transform(), ha="left", va="bottom", fontsize=8,
                            color=color, bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7))
            ax.set_ylim(-0.02, 1.05)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(left=0)
        ax_s.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax_s.set_xlabel("env steps")
        ax_w.set_xlabel("wall time since the run started (s, compilation included)")
        ax_s.set_ylabel("greedy eval performance\n(fraction correct)")
        ax_s.set_title(f"{task}: performance vs env steps", fontsize=10)
        ax_w.set_title(f"{task}: performance vs wall time", fontsize=10)
    order = sorted(handles, key=lambda name: labels.index(name.rsplit(" (n=", 1)[0]))
    legend = [handles[name] for name in order] + [
        Line2D([], [], color="black", ls="--", lw=1.0), Line2D([], [], color="0.5", ls="--", lw=1.0),
    ]
    kinds = {TASK_META[t].ceiling_by for t in groups if t in TASK_BASELINES}
    names = order + ["ideal-observer ceiling" if kinds <= {"ideal observer"} else "ceiling", "random policy"]
    fig.legend(legend, names, loc="outside lower center", ncol=min(3, len(names)), fontsize=9, frameon=False)
    fig.suptitle(title or "Learning curves (mean over seeds, 95% bootstrap CI)", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def figure_path(out: str) -> Path:
    """--out as the file that will be written: a name without a suffix gets .png (matplotlib would
    add it silently), and an existing folder is refused rather than written beside."""
    path = Path(out)
    if path.is_dir():
        raise PlotError(f"--out {out}: is a folder; give a file name, e.g. {path / 'compare.png'}")
    return check_figure(path, "--out") if path.suffix else path.with_name(path.name + ".png")


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description="Learning curves of run folders, grouped by batching mode, "
                                "memory model and segment settings (mean and 95%% bootstrap CI over seeds).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder, or a folder of run folders (e.g. seed*/)")
    p.add_argument("--out", required=True, metavar="FIG.png", help="figure to write (.png, .pdf, .svg)")
    p.add_argument("--title", help="figure title")
    args = p.parse_args(argv)
    try:
        runs = [load_run(d) for d in find_runs(args.runs)]
        empty = [r for r in runs if r["metrics"]["env_steps"].size == 0]
        for r in empty:
            print(f"{PROG}: note: {r['path']}: metrics.csv has no rows yet; skipped", file=sys.stderr)
        runs = [r for r in runs if r["metrics"]["env_steps"].size > 0]
        if not runs:
            raise PlotError("no run has any metrics.csv row yet; nothing to plot")
        out = plot(group_runs(runs), figure_path(args.out), args.title)
    except PlotError as e:
        return cli_error(PROG, e)
    except (OSError, ValueError) as e:  # e.g. an unwritable --out or an unknown figure format
        return cli_error(PROG, f"{type(e).__name__}: {e}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
