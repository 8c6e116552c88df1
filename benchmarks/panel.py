"""The task panel: the default agent on every discrete-action NeuroGym task, 5 seeds each.

    python -m benchmarks.panel                          # train what is missing, then the table and figure
    python -m benchmarks.panel --settings tape_mpn      # only the default agent
    python -m benchmarks.panel --table-only             # only the table and figure from the run folders
    python -m benchmarks.panel --table-only --table figures/panel.md --figure figures/panel.png  # the record
    python -m benchmarks.panel --tasks GoNogo-v0 DelayComparison-v0 --steps 50000 --out /tmp/panel

For each task of the task table (collector/tasks, the 26 native discrete-action tasks of neurogym
2.3.1, all on the jax backend) and each setting, one program of `--seeds` vmapped seeds trains with
the task's experiment file, only the env-step budget changed. Settings:
  tape_mpn     experiments/<task>/tape_mpn.yaml (the default agent)
  tape_gru     experiments/<task>/tape_gru.yaml (the same agent with a GRU memory)
  segment_mpn  the default agent on segments, the best segment setting of the three tuned tasks:
               L = 50, B = 20, burn-in 25, stored state (R2D2)
  reference    tape_gru with `--reference-steps`, only on tasks with no known ceiling: the ceiling
               the table uses there (the mean final value of its seeds)
Finished runs are kept; an interrupted one is resumed (`--resume`), so the command can be re-run.

The table (`--table`, default OUT/panel.md, markdown; the same figures as JSON beside it; the
figure `--figure`, default OUT/panel.png) has one row per task and
setting: the column the task is judged on (neurogym's performance, or reward per trial where the
performance cannot show learning: collector.tasks.SCORES says why), its random-policy value and
ceiling, the final value (greedy, mean over seeds with a 95% bootstrap CI), the target (a
normalised score of 0.9: random + 0.9 * (ceiling - random)), the seeds that reached it, env steps and wall seconds to it (mean over those seeds), and
stability: the seeds whose every later evaluation stayed within 0.05 below the target.
Aggregates use rliable: the interquartile mean of ceiling-normalised final scores,
(x - random) / (ceiling - random), with stratified bootstrap CIs, and the probabilities of
improvement of mpn over gru and of tape over segments, over the tasks that have a ceiling above
their random value.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from collector.tasks import PORTS, SCORES, TASK_META, score_of
from plotting.common import PlotError, bootstrap_ci, check_figure, cli_error, find_runs, load_run, use_agg
from oneline import OneLineParser

PROG = "python -m benchmarks.panel"
ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("tape_mpn", "tape_gru", "segment_mpn")
SEGMENT = ["--set", "segment.length=50", "--set", "segment.batch_size=20",
           "--set", "segment.burn_in=25", "--set", "segment.stored_state=true"]
STABLE_MARGIN = 0.05  # how far below the target a later evaluation may fall and still count as stable
TARGET_FRACTION = 0.9
NOTHING_TO_LEARN = {t for t, s in SCORES.items() if s.ceiling is None}  # judged, but with no ceiling


def _script(setting: str) -> str:
    if setting not in SETTINGS:
        raise ValueError(setting)
    return "segment_dqn.py" if setting == "segment_mpn" else "tape_dqn.py"


def command(setting: str, task: str, seeds: int, steps: int, sets=()) -> list[str]:
    """The training command of one (setting, task) program, without --out; `sets`: extra
    KEY=VALUE overrides for every program."""
    exp = ROOT / "experiments" / TASK_META[task].module
    if setting == "tape_mpn":
        cmd = [str(exp / "tape_mpn.yaml")]
    elif setting in ("tape_gru", "reference"):
        cmd = [str(exp / "tape_gru.yaml")]
    else:
        cmd = [str(exp / "tape_mpn.yaml"), *SEGMENT]
    return [sys.executable, str(ROOT / _script(setting)), *cmd, "--seeds", str(seeds),
            "--set", f"train.total_env_steps={steps}", *[a for kv in sets for a in ("--set", kv)], "--no-progress"]


def resume_command(setting: str, out: Path) -> list[str]:
    """The command that continues an interrupted program: the run folder holds its own config."""
    return [sys.executable, str(ROOT / _script(setting)), "--resume", str(out), "--no-progress"]


def finished(out: Path) -> bool:
    """Whether every seed of the program in `out` has its summary (the seeds are the ones its
    run.json names, whatever the first seed was)."""
    try:
        seeds = json.loads((out / "run.json").read_text())["seeds"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    dirs = [out] if len(seeds) == 1 else [out / f"seed{k}" for k in seeds]
    return all((d / "summary.json").is_file() for d in dirs)


class BadRun(Exception):
    """A program refused its input (exit status 2): every other program would refuse it too."""


class Stopped(Exception):
    """The panel got SIGINT or SIGTERM; its running program was stopped the same way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _die_with_parent():
    # the child gets SIGTERM (and checkpoints) if the panel itself is killed, even with kill -9
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(cmd: list[str], log: Path) -> int:
    """Run one training program to its end, output to `log`. A SIGINT or SIGTERM to the panel is
    passed to the program once (it checkpoints and stops), then Stopped is raised. The program
    runs in its own session, so a Ctrl-C in the terminal reaches it only through the panel."""
    heard = []

    def forward(signum, frame):
        heard.append(signum)
        if len(heard) == 1 and proc.poll() is None:
            proc.send_signal(signum)

    with open(log, "a") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            rc = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if heard:
        raise Stopped(heard[0])
    return rc


def train(setting: str, task: str, out: Path, seeds: int, steps: int, sets=()) -> bool:
    """Run (or resume) one program unless it has finished; True when its run folders are complete.
    Raises BadRun with the program's one-line error when it refused its input (its log, and the
    folders made for it, removed), Stopped on a signal."""
    if finished(out):
        return True
    resume = (out / "run.json").is_file()
    cmd = resume_command(setting, out) if resume else [*command(setting, task, seeds, steps, sets), "--out", str(out)]
    print(f"{PROG}: {setting} on {task}: {' '.join(cmd[1:])}", flush=True)
    log = out.parent / f"{out.name}.log"
    made = [d for d in (out.parent, out.parent.parent) if not d.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    new_log = not log.exists()
    rc = run_child(cmd, log)
    if rc == 2:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        if new_log:
            log.unlink(missing_ok=True)
        for d in made:  # innermost first; only the empty folders this call made
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise BadRun(f"{setting} on {task}: {lines[-1] if lines else 'exit status 2'}")
    if rc != 0:
        print(f"{PROG}: {setting} on {task} failed (exit {rc}); see {log}", file=sys.stderr, flush=True)
    return rc == 0 and finished(out)


# ------------------------------------------------------------------------------------------------
# Figures from run folders
# ------------------------------------------------------------------------------------------------
def seed_figures(run: dict, column: str, target: float | None) -> dict:
    """Final value, first evaluation at the target (env steps, wall s) and stability of one seed."""
    m, s = run["metrics"], run["summary"] or {}
    final_key = "final_" + column
    final = s.get(final_key, np.nan)
    if isinstance(final, bool) or not isinstance(final, (int, float)):
        raise PlotError(f"{run['path']}/summary.json: field '{final_key}' is not a number")
    out = dict(final=float(final), reach=None, stable=None)
    if target is None or column not in m:
        return out
    values = m[column]
    hit = np.flatnonzero(values >= target)
    if hit.size:
        i = hit[0]
        out["reach"] = (float(m["env_steps"][i]), float(m["wall_s"][i]))
        later = values[i + 1:]
        out["stable"] = bool(np.all(later[~np.isnan(later)] >= target - STABLE_MARGIN))
    return out


def _ci(values, digits=3) -> str:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return "-"
    mean, lo, hi = (float(x[0]) for x in bootstrap_ci(v[:, None]))
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def load_setting(out: Path) -> list[dict]:
    if not out.is_dir():
        return []
    return [load_run(d) for d in find_runs([out])]


def ceiling_of(task: str, out_root: Path) -> tuple[float | None, str]:
    """(ceiling, how it was obtained) of the column the task is judged on."""
    sc = score_of(task)
    if sc.ceiling is not None:
        return sc.ceiling, sc.why if sc.column == "eval_performance" else "reward of the ideal policy"
    if task in NOTHING_TO_LEARN:
        return None, "nothing to learn"
    runs = [r for r in load_setting(out_root / "reference" / TASK_META[task].module) if r["summary"]]
    if not runs:
        return None, "no reference run yet"
    finals = [r["summary"]["final_" + sc.column] for r in runs]
    steps = int(runs[0]["cfg"]["train"]["total_env_steps"])
    return float(np.mean(finals)), f"GRU reference ({len(runs)} seeds, {steps // 1000}k env steps)"


def needs_reference(task: str) -> bool:
    return score_of(task).ceiling is None and task not in NOTHING_TO_LEARN


def panel_rows(out_root: Path, tasks, settings) -> list[dict]:
    rows = []
    for task in tasks:
        sc = score_of(task)
        ceiling, by = ceiling_of(task, out_root)
        # 90% of the way from the random policy to the ceiling: the normalised score the aggregates use
        target = None if ceiling is None else round(sc.random + TARGET_FRACTION * (ceiling - sc.random), 4)
        for setting in settings:
            runs = load_setting(out_root / setting / TASK_META[task].module)
            if not runs:
                continue
            figs = [seed_figures(r, sc.column, target) for r in runs]
            got = [f for f in figs if f["reach"] is not None]
            rows.append(dict(
                task=task, setting=setting, column=sc.column, random=sc.random, ceiling=ceiling, ceiling_by=by,
                why=sc.why if task in SCORES else "", target=target, seeds=len(runs),
                finals=[f["final"] for f in figs], final=_ci([f["final"] for f in figs]),
                reached=len(got), steps=_ci([g["reach"][0] for g in got], 0),
                wall=_ci([g["reach"][1] for g in got], 1), stable=sum(bool(g["stable"]) for g in got),
                finished=sum(r["summary"] is not None for r in runs),
            ))
    return rows


def normalised(row: dict) -> np.ndarray | None:
    """Ceiling-normalised final scores [seeds], or None where the task has no usable ceiling."""
    if row["ceiling"] is None or row["ceiling"] - row["random"] <= 1e-6:
        return None
    return (np.asarray(row["finals"], float) - row["random"]) / (row["ceiling"] - row["random"])


def aggregates(rows: list[dict], reps: int = 2000) -> dict:
    """rliable's IQM (stratified bootstrap CIs) per setting and probabilities of improvement, over
    the tasks every compared setting has, with the same number of seeds."""
    from rliable import library as rly
    from rliable import metrics

    by = {}
    for r in rows:
        s = normalised(r)
        if s is not None and not np.isnan(s).any():
            by.setdefault(r["setting"], {})[r["task"]] = s
    out = {}
    common = set.intersection(*(set(v) for v in by.values())) if by else set()
    for setting, per_task in by.items():
        # over the setting's own tasks, and (where settings cover different tasks) over the common ones
        for label, tasks in ((f"IQM {setting}", sorted(per_task)),
                             (f"IQM {setting}, the {len(common)} tasks of every setting", sorted(common))):
            if label in out or not tasks or (label != f"IQM {setting}" and len(common) == len(per_task)):
                continue
            n = min(len(per_task[t]) for t in tasks)
            scores = {setting: np.stack([per_task[t][:n] for t in tasks], axis=1)}  # [seeds, tasks]
            point, ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
            out[label] = dict(value=float(point[setting][0]), ci=[float(c) for c in ci[setting][:, 0]],
                              tasks=len(tasks), seeds=n)
    for x, y in (("tape_mpn", "tape_gru"), ("tape_mpn", "segment_mpn")):
        if x not in by or y not in by:
            continue
        tasks = sorted(set(by[x]) & set(by[y]))
        if not tasks:
            continue
        n = min(min(len(by[x][t]), len(by[y][t])) for t in tasks)
        pair = (np.stack([by[x][t][:n] for t in tasks], 1), np.stack([by[y][t][:n] for t in tasks], 1))
        point, ci = rly.get_interval_estimates({f"{x},{y}": pair}, metrics.probability_of_improvement, reps=reps)
        out[f"P({x} > {y})"] = dict(value=float(point[f"{x},{y}"]), ci=[float(c) for c in ci[f"{x},{y}"][:, 0]],
                                     tasks=len(tasks), seeds=n)
    return out


def markdown(rows: list[dict], agg: dict) -> str:
    lines = ["| task | run | judged on | random | ceiling | final, mean [95% CI] | target | reached "
             "| env steps to target | wall s to target | stable after reaching |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        judged = "performance" if r["column"] == "eval_performance" else "reward per trial"
        ceiling = "-" if r["ceiling"] is None else f"{r['ceiling']:.3f} ({r['ceiling_by']})"
        target = "-" if r["target"] is None else f"{r['target']:.3f}"
        reached = "-" if r["target"] is None else f"{r['reached']}/{r['seeds']}"
        stable = "-" if not r["reached"] else f"{r['stable']}/{r['reached']}"
        lines.append(f"| {r['task']} | {r['setting']} | {judged} | {r['random']:.3f} | {ceiling} | {r['final']} | "
                     f"{target} | {reached} | {r['steps']} | {r['wall']} | {stable} |")
    notes = sorted({(r["task"], r["why"]) for r in rows if r["why"]})
    if notes:
        lines += ["", "Tasks not judged on neurogym's performance with an ideal observer or scripted policy:", ""]
        lines += [f"- {t}: {why}." for t, why in notes]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting and r["target"] is not None]
        reached, stable = sum(r["reached"] for r in mine), sum(r["stable"] for r in mine)
        full = sum(r["reached"] == r["seeds"] for r in mine)
        lines += ["", f"{setting}: {full} of {len(mine)} tasks with a ceiling reached the target with every seed; "
                      f"{stable} of the {reached} seeds that reached it stayed within {STABLE_MARGIN} below it "
                      f"at every later evaluation."]
    if agg:
        lines += ["", "| aggregate (rliable, ceiling-normalised final scores) | value [95% CI] | tasks | seeds |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] | {v['tasks']} | {v['seeds']} |"
                  for k, v in agg.items()]
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path, settings) -> None:
    """One glance: each task's final value per seed and setting, its random value and ceiling."""
    use_agg()
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(tasks) + 1.5))
    colors = dict(tape_mpn="C0", tape_gru="C1", segment_mpn="C2", reference="C7")
    offsets = {s: (i - (len(settings) - 1) / 2) * 0.22 for i, s in enumerate(settings)}
    seen = set()
    for r in rows:
        y = len(tasks) - 1 - tasks.index(r["task"])
        if r["setting"] not in offsets:
            continue
        yy = y + offsets[r["setting"]]
        label = None if r["setting"] in seen else r["setting"]
        seen.add(r["setting"])
        ax.scatter(r["finals"], [yy] * len(r["finals"]), s=12, color=colors.get(r["setting"], "C3"), label=label,
                   alpha=0.8, zorder=3)
    for task in tasks:
        y = len(tasks) - 1 - tasks.index(task)
        r = next(x for x in rows if x["task"] == task)
        ax.plot([r["random"]], [y], marker="x", color="grey", ms=7, zorder=2)
        if r["ceiling"] is not None:
            ax.plot([r["ceiling"]] * 2, [y - 0.4, y + 0.4], color="black", lw=1.5, zorder=2)
    ax.plot([], [], marker="x", color="grey", ls="", label="random policy")
    ax.plot([], [], color="black", label="ceiling")
    names = [t + (" (reward)" if score_of(t).column != "eval_performance" else "") for t in tasks]
    ax.set_yticks(range(len(tasks)), names[::-1], fontsize=7)
    ax.set_xlabel("final greedy performance (reward per trial where marked), one dot per seed")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_all(args, out_root: Path) -> None:
    """Train every (task, setting) program that has not finished, task by task."""
    for task in args.tasks:
        if needs_reference(task) and args.reference_steps:
            train("reference", task, out_root / "reference" / TASK_META[task].module, args.seeds,
                  args.reference_steps, args.set)
        for setting in args.settings:
            train(setting, task, out_root / setting / TASK_META[task].module, args.seeds, args.steps, args.set)


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/panel", help="folder of the run folders (default results/panel)")
    p.add_argument("--tasks", nargs="+", default=[m.task for m in PORTS], metavar="TASK")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="SETTING",
                   help=f"of {', '.join(SETTINGS)} (default: all)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=200_000, help="env steps per run (default 200000)")
    p.add_argument("--reference-steps", type=int, default=1_000_000,
                   help="env steps of the GRU reference on tasks with no known ceiling (0: none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every program (repeatable), as the entry points' --set")
    p.add_argument("--table-only", action="store_true", help="train nothing; table and figure from the folders")
    p.add_argument("--table", help="markdown table, JSON beside it (default OUT/panel.md; the repository's "
                   "record is figures/panel.md, written only when named)")
    p.add_argument("--figure", help="figure (default OUT/panel.png)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions of the aggregates")
    args = p.parse_args(argv)
    bad = [t for t in args.tasks if t not in TASK_META]
    if bad:
        return cli_error(PROG, f"unknown task(s) {', '.join(bad)} (known: {', '.join(TASK_META)})")
    bad = [s for s in args.settings if s not in SETTINGS]
    if bad:
        return cli_error(PROG, f"unknown setting(s) {', '.join(bad)} (known: {', '.join(SETTINGS)})")
    if args.seeds < 1 or args.steps < 1 or args.reference_steps < 0 or args.reps < 1:
        return cli_error(PROG, "--seeds, --steps and --reps must be positive, --reference-steps at least 0")
    bad = [kv for kv in args.set if "=" not in kv or not kv.split("=", 1)[0].strip()]
    if bad:
        return cli_error(PROG, f"--set {bad[0]!r}: expected KEY=VALUE")
    out_root = Path(args.out)
    args.table = args.table or str(out_root / "panel.md")
    args.figure = args.figure or str(out_root / "panel.png")
    try:
        check_figure(args.figure, "--figure")  # before any training, and before the table is written
    except PlotError as e:
        return cli_error(PROG, str(e))
    if not args.table_only:
        try:
            out_root.mkdir(parents=True, exist_ok=True)
            probe = out_root / ".panel_probe"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            return cli_error(PROG, f"--out {args.out}: cannot write there: {e.strerror or e}")
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        try:
            run_all(args, out_root)
        except BadRun as e:
            return cli_error(PROG, str(e))
        except Stopped as e:
            print(f"{PROG}: {signal.Signals(e.signum).name}: the running program checkpointed and stopped; "
                  "run the same command again to continue", file=sys.stderr)
            return 128 + e.signum
    try:
        rows = panel_rows(out_root, args.tasks, args.settings)
    except PlotError as e:
        return cli_error(PROG, str(e))
    if not rows:
        return cli_error(PROG, f"{args.out}: no run folders of the panel there")
    agg = aggregates(rows, args.reps)
    text = markdown(rows, agg)
    try:
        for path in (args.table, args.figure):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text)
        Path(args.table).with_suffix(".json").write_text(json.dumps(dict(rows=rows, aggregates=agg), indent=1))
        figure(rows, Path(args.figure), [s for s in args.settings])
    except OSError as e:
        return cli_error(PROG, f"cannot write the table or figure: {e.strerror or e}")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
