"""Table and plot of a sweep (`python -m sweep`): final performance and env steps to the target
against each swept value, mean and 95% bootstrap CI over seeds.

    python -m plotting.sweep SWEEP_DIR [--out FIG.png] [--table TABLE.md] [--target T]

Reads the sweep's plan (sweep.json) and its run folders; runs still training count as missing.
Defaults: SWEEP_DIR/sweep.png and SWEEP_DIR/sweep.md. One column of panels per swept key, the
other keys' combinations as separate lines; a setting whose seeds never reached the target has no
point in the lower panel (the table says how many did).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from plotting.common import (
    PlotError, bootstrap_ci, check_figure, check_writable, cli_error, load_metrics, load_summary, use_agg,
)
from plotting.table import TARGETS, first_reach
from oneline import OneLineParser

PROG = "python -m plotting.sweep"


def _ci(values) -> tuple[float, float, float]:
    mean, lo, hi = (float(x[0]) for x in bootstrap_ci(np.asarray(values, float)[:, None]))
    return mean, lo, hi


def settings(top: Path, target: float | None) -> tuple[list[str], list[dict]]:
    """(swept keys, one dict per setting: its values, finals and steps to target over seeds)."""
    from config import ConfigError
    from sweep import check_plan

    try:
        plan = json.loads((top / "sweep.json").read_text())
    except FileNotFoundError:
        raise PlotError(f"{top}: no sweep.json (not a sweep folder of python -m sweep)") from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        raise PlotError(f"{top}/sweep.json: damaged") from None
    try:
        check_plan(plan, f"{top}/sweep.json")
    except ConfigError as e:
        raise PlotError(str(e)) from None
    if not isinstance(plan.get("grid"), dict):
        raise PlotError(f"{top}/sweep.json is damaged: grid")
    programs, keys = plan["programs"], list(plan["grid"])
    out: dict[str, dict] = {}
    for p in programs:
        for r in p["runs"]:
            label = json.dumps(r["setting"], sort_keys=True)
            s = out.setdefault(label, dict(setting=r["setting"], finals=[], steps=[], seeds=0, done=0,
                                           task=r["config"]["env"]["task"]))
            s["seeds"] += 1
            d = top / r["dir"]
            summary = load_summary(d) if (d / "summary.json").is_file() else None
            if summary is None:
                continue
            s["done"] += 1
            s["finals"].append(summary["final_eval_performance"])
            goal = target if target is not None else r["config"]["eval"]["target"] or TARGETS.get(s["task"])
            s["target"] = goal
            hit = first_reach(load_metrics(d), goal) if goal is not None else None
            if hit is not None:
                s["steps"].append(hit[0])
    return keys, list(out.values())


def markdown(keys: list[str], rows: list[dict]) -> str:
    head = "| " + " | ".join(keys) + " | seeds | final performance, mean [95% CI] | target | reached | env steps to target |"
    lines = [head, "|" + "---|" * (len(keys) + 5)]
    for s in rows:
        final = "running" if not s["finals"] else "{:.3f} [{:.3f}, {:.3f}]".format(*_ci(s["finals"]))
        steps = "-" if not s["steps"] else "{:.0f} [{:.0f}, {:.0f}]".format(*_ci(s["steps"]))
        vals = " | ".join(str(s["setting"].get(k)) for k in keys)
        lines.append(f"| {vals} | {s['done']}/{s['seeds']} | {final} | {s.get('target')} | "
                     f"{len(s['steps'])}/{s['seeds']} | {steps} |")
    return "\n".join(lines) + "\n"


def plot(keys: list[str], rows: list[dict], out: Path, title: str) -> None:
    use_agg()
    import matplotlib.pyplot as plt

    keys = keys or ["(no grid)"]
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 6.4), squeeze=False)
    for j, key in enumerate(keys):
        others = [k for k in keys if k != key]
        lines: dict[str, list] = {}
        for s in rows:
            name = ", ".join(f"{k.split('.')[-1]}={s['setting'].get(k)}" for k in others) or "all"
            lines.setdefault(name, []).append(s)
        for name, members in lines.items():
            members = sorted(members, key=lambda s: _order(s["setting"].get(key)))
            x = [str(s["setting"].get(key)) for s in members]
            for row, field in ((0, "finals"), (1, "steps")):
                pts = [(xi, _ci(s[field])) for xi, s in zip(x, members) if s[field]]
                if not pts:
                    continue
                xs, cis = zip(*pts)
                m, lo, hi = (np.asarray(v) for v in zip(*cis))
                axes[row, j].errorbar(xs, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=name)
        axes[0, j].set_title(key)
        axes[1, j].set_xlabel(key.split(".")[-1])
        axes[0, j].set_ylabel("final performance")
        axes[1, j].set_ylabel("env steps to target")
        if len(lines) > 1:
            axes[0, j].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _order(v):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (python -m sweep --out)")
    p.add_argument("--out", help="figure (default SWEEP/sweep.png)")
    p.add_argument("--table", help="markdown table (default SWEEP/sweep.md)")
    p.add_argument("--target", type=float, help="one target (default: each run's eval.target)")
    args = p.parse_args(argv)
    top = Path(args.sweep)
    try:
        table = Path(args.table or top / "sweep.md")
        fig = check_figure(args.out or top / "sweep.png", "--out")
        keys, rows = settings(top, args.target)
        text = markdown(keys, rows)
        check_writable(table, "--table")  # both before either is written
        check_writable(fig, "--out")
        table.write_text(text)
        plot(keys, rows, fig, f"{rows[0]['task'] if rows else ''}: {sum(s['seeds'] for s in rows)} runs")
    except PlotError as e:
        return cli_error(PROG, str(e))
    except OSError as e:
        return cli_error(PROG, f"cannot write {e.filename or ''}: {e.strerror or e}")
    sys.stdout.write(text)
    print(f"{PROG}: wrote {table} and {fig}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
