"""Plot a throughput benchmark file written by `python -m benchmarks.throughput --out BENCH.json`.

    python -m plotting.throughput BENCH.json --out FIG.png

Panels: (a) update throughput in valid transitions/s (log scale), tape versus segments, one panel
per memory, against the nominal transitions per batch (tape rows N, or B * L); (b) padding
overhead of segments against L (measured, and the sampler's exact expectation), tapes for
reference; (b') time of the jitted sampler per batch; (c) collection env steps/s (log scale) per
backend, number of envs and policy, one panel per task. A file of `--only tapes` gets its own
figure (`plot_tapes`): update throughput per configuration and hidden size with the fraction of
the core's peak, lean vs plain scan, and the padding per lane count. Records that carry an `error` are skipped.
Any problem with the input prints one line on stderr and exits with status 2.
"""
from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from memory import MEMORY_ORDER  # the registry's display order of the memory models (no JAX)
from oneline import OneLineParser
from plotting.common import PlotError, check_writable

PROG = "python -m plotting.throughput"
SEG_COLORS = {10: "tab:blue", 50: "tab:orange", 100: "tab:green"}
BACKEND_COLORS = {"jax": "tab:blue", "neurogym": "tab:orange"}
POLICY_ORDER = {"random_nonet": 0, "random": 1, "greedy": 2}


class BenchPlotError(Exception):
    """Bad input: the message is one line meant for the user."""


def load_records(path) -> list[dict]:
    """The records of a benchmark file (a JSON list of objects with a `kind`); errors as
    BenchPlotError."""
    path = Path(path)
    if not path.is_file():
        raise BenchPlotError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise BenchPlotError(f"{path}: not a JSON file: {str(e).splitlines()[0]}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "kind" in r for r in data):
        raise BenchPlotError(f"{path}: not a benchmark file (expected a JSON list of records with a 'kind')")
    return data


def _ok(records, kind):
    return [r for r in records if r.get("kind") == kind and not r.get("error")]


def _color_for_length(length, lengths):
    if length in SEG_COLORS:
        return SEG_COLORS[length]
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return cmap(sorted(lengths).index(length) / max(1, len(lengths) - 1))


def _plot_updates(fig, gs_row, updates):
    memories = sorted({r["memory"] for r in updates}, key=lambda m: (MEMORY_ORDER.index(m) if m in MEMORY_ORDER else 9, m))
    lengths = sorted({r["segment_length"] for r in updates if r["batching"] == "segment"})
    axes = []
    for i, memory in enumerate(memories):
        ax = fig.add_subplot(gs_row[i], sharey=axes[0] if axes else None)
        axes.append(ax)
        rs = [r for r in updates if r["memory"] == memory]
        series = defaultdict(list)
        for r in rs:
            if r["batching"] == "tape":
                key = ("tape", None)
            else:
                key = (r["segment_mode"], r["segment_length"])
            series[key].append((r["nominal_transitions"], r["transitions_per_s"]))
        for key in sorted(series, key=lambda k: (k[0] != "tape", k[1] or 0, k[0])):
            pts = sorted(series[key])
            x, y = [p[0] for p in pts], [p[1] for p in pts]
            mode, length = key
            if mode == "tape":
                ax.plot(x, y, "o-", color="black", lw=2.2, ms=7, label="tape", zorder=5)
            else:
                r2d2 = mode == "r2d2"
                ax.plot(x, y, ("s:" if r2d2 else "^--"), color=_color_for_length(length, lengths), lw=1.6, ms=6,
                        mfc="white" if r2d2 else None,
                        label=f"segments L={length}, " + ("R2D2 burn-in L/2" if r2d2 else "DRQN burn-in 0"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax.xaxis)
        _log_ticks(ax.yaxis)
        ax.set_title(f"(a) update throughput: {memory}", fontsize=11)
        ax.set_xlabel("transitions per batch (tape rows N = B·L)")
        if i == 0:
            ax.set_ylabel("valid transitions / s (log)")
        ax.grid(True, which="both", alpha=0.3)
    if axes:
        handles, labels = {}, []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in handles:
                    handles[lab] = h
                    labels.append(lab)
        axes[-1].legend([handles[lab] for lab in labels], labels, fontsize=8, loc="upper left",
                        bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, title="batching", title_fontsize=9)
    return axes


def _plot_padding(ax, samples, updates):
    rows = samples or updates
    seg = [r for r in rows if r.get("batching") == "segment"]
    tape = [r for r in rows if r.get("batching") == "tape"]
    for mode, marker, name in (("drqn", "^", "DRQN (burn-in 0)"), ("r2d2", "s", "R2D2 (burn-in L/2)")):
        by_len = defaultdict(list)
        exp_by_len = defaultdict(list)
        for r in seg:
            if r["segment_mode"] == mode:
                by_len[r["segment_length"]].append(r["padding_overhead"])
                if r.get("padding_overhead_expected") is not None:
                    exp_by_len[r["segment_length"]].append(r["padding_overhead_expected"])
        if not by_len:
            continue
        ls = sorted(by_len)
        color = "tab:red" if mode == "drqn" else "tab:purple"
        ax.plot(ls, [sum(by_len[l]) / len(by_len[l]) for l in ls], marker + "-", color=color, ms=8, lw=1.8,
                label=f"segments, {name}: measured")
        le = sorted(exp_by_len)
        if le:
            ax.plot(le, [sum(exp_by_len[l]) / len(exp_by_len[l]) for l in le], marker, color=color, ms=13,
                    mfc="none", mew=1.5, label=f"segments, {name}: expected")
        for l in ls:
            v = sum(by_len[l]) / len(by_len[l])
            ax.annotate(f"{v:.2f}", (l, v), textcoords="offset points", xytext=(6, -12 if mode == "drqn" else 6),
                        fontsize=8, color=color)
    if tape:
        v = sum(r["padding_overhead"] for r in tape) / len(tape)
        sizes = sorted({r["tape_size"] for r in tape})
        ax.axhline(v, color="black", lw=1.5, ls="-",
                   label=f"tape (N = {', '.join(map(str, sizes))}): {v:.3f}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("segment length L (transitions)")
    ax.set_ylabel("padding overhead\n(fraction of computed rows not valid)")
    ax.set_title("(b) padding overhead: computed rows that are not valid transitions", fontsize=11)
    ls_all = sorted({r["segment_length"] for r in seg})
    if ls_all:
        ax.set_xticks(ls_all)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.85)


def _plot_sample_time(ax, samples):
    series = defaultdict(list)
    lengths = sorted({r["segment_length"] for r in samples if r["batching"] == "segment"})
    for r in samples:
        key = ("tape", None) if r["batching"] == "tape" else (r["segment_mode"], r["segment_length"])
        series[key].append((r["nominal_transitions"], r["seconds_median"] * 1e3))
    for key in sorted(series, key=lambda k: (k[0] != "tape", k[1] or 0, k[0])):
        # R2D2 samplers are timed once per memory (they gather its stored state): average them
        by_n = defaultdict(list)
        for n, t in series[key]:
            by_n[n].append(t)
        x = sorted(by_n)
        y = [sum(by_n[n]) / len(by_n[n]) for n in x]
        mode, length = key
        if mode == "tape":
            ax.plot(x, y, "o-", color="black", lw=2, label="tape")
        else:
            r2d2 = mode == "r2d2"
            ax.plot(x, y, "s:" if r2d2 else "^--", color=_color_for_length(length, lengths),
                    mfc="white" if r2d2 else None, label=f"L={length} {'R2D2' if r2d2 else 'DRQN'}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis)
    _log_ticks(ax.yaxis)
    ax.set_xlabel("transitions per batch (N = B·L)")
    ax.set_ylabel("ms per sampled batch (log)")
    ax.set_title("(b') jitted buffer sampler", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)


def _collection_label(r):
    pol = {"random_nonet": "random, no network", "random": "random (ε=1, MPN runs)", "greedy": "greedy MPN (ε=0)"}
    name = pol.get(r["policy"], r["policy"])
    rec = ", record" if r.get("record") else ""
    return f"{r['backend']} N={r['num_envs']}: {name}{rec}"


def _task_order(task):
    order = ("PerceptualDecisionMaking-v0", "DelayMatchSample-v0", "ContextDecisionMaking-v0")
    return (order.index(task) if task in order else len(order), task)


def _collection_key(r):
    return (r["backend"] != "jax", r["num_envs"], POLICY_ORDER.get(r["policy"], 9), bool(r.get("record")))


def _plot_collection(fig, gs_row, coll):
    """One horizontal bar panel per task, the same rows (backend, envs, policy, record) in each,
    labelled on the first panel only, on a common log x axis."""
    from matplotlib.ticker import NullFormatter

    tasks = sorted({r["task"] for r in coll}, key=_task_order)
    keys = sorted({_collection_key(r) for r in coll})
    label_of = {_collection_key(r): _collection_label(r) for r in coll}
    ypos = {k: len(keys) - 1 - i for i, k in enumerate(keys)}
    vals_all = [r["env_steps_per_s"] for r in coll]
    lo = 10 ** math.floor(math.log10(min(vals_all)) - 0.2)
    hi = 10 ** math.ceil(math.log10(max(vals_all)) + 0.5)
    axes = []
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(gs_row[i], sharey=axes[0] if axes else None)
        axes.append(ax)
        rs = [r for r in coll if r["task"] == task]
        y = [ypos[_collection_key(r)] for r in rs]
        vals = [r["env_steps_per_s"] for r in rs]
        colors = [BACKEND_COLORS.get(r["backend"], "tab:gray") for r in rs]
        bars = ax.barh(y, vals, color=colors, edgecolor="black", lw=0.6)
        for b, r in zip(bars, rs):
            if r.get("record"):
                b.set_hatch("//")
        for yy, v in zip(y, vals):
            ax.text(v * 1.1, yy, _fmt(v), va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(range(len(keys)))
        if i == 0:
            ax.set_yticklabels([label_of[k] for k in sorted(keys, key=lambda k: ypos[k])], fontsize=8)
        else:
            ax.tick_params(axis="y", labelleft=False)
        ax.set_ylim(-0.6, len(keys) - 0.4)
        ax.set_xlabel("env steps / s (log)")
        ax.set_title(f"(c) collection: {task}", fontsize=11)
        ax.grid(True, axis="x", which="major", alpha=0.3)
    if axes:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor="black", label=f"{b} backend") for b, c in BACKEND_COLORS.items()
                   if any(r["backend"] == b for r in coll)]
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="episodes recorded"))
        axes[-1].legend(handles=handles, fontsize=8, loc="lower right", framealpha=0.9)
    return axes


def _log_ticks(axis):
    """Readable tick labels on a log axis: 1k, 2k, 5k, 10k, ... (also between decades)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v) if v > 0 else ""))
    axis.set_minor_formatter(NullFormatter())


def _fmt(x):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"



def plot(records: list[dict], out) -> Path:
    """Draw the figure of these records to `out` (PNG). Raises BenchPlotError when nothing can be
    plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec, GridSpecFromSubplotSpec

    updates, samples, coll = _ok(records, "update"), _ok(records, "sample"), _ok(records, "collection")
    try:
        _check(updates, ("memory", "batching", "nominal_transitions", "transitions_per_s", "padding_overhead"))
        _check(samples, ("batching", "nominal_transitions", "seconds_median", "padding_overhead"))
        _check(coll, ("backend", "task", "num_envs", "policy", "env_steps_per_s"))
    except KeyError as e:
        raise BenchPlotError(f"a record lacks the field {e}") from None
    if not (updates or samples or coll):
        raise BenchPlotError("no measurement without error in the file: nothing to plot")

    n_mem = max(1, len({r["memory"] for r in updates}))
    n_task = max(1, len({r["task"] for r in coll}))
    per_task = max(1, len({_collection_key(r) for r in coll}))
    heights, rows = [], []
    if updates:
        rows.append("a")
        heights.append(4.6)
    if updates or samples:
        rows.append("b")
        heights.append(4.2)
    if coll:
        rows.append("c")
        heights.append(max(2.8, 0.34 * per_task + 1.2))
    width = max(15.0, 5.2 * max(n_mem, n_task if n_task > 1 else 1))
    fig = plt.figure(figsize=(width, sum(heights) + 1.2), layout="constrained")
    gs = GridSpec(len(rows), 1, figure=fig, height_ratios=heights)
    env = (records[0] if records else {})
    for i, row in enumerate(rows):
        if row == "a":
            _plot_updates(fig, GridSpecFromSubplotSpec(1, n_mem, subplot_spec=gs[i]), updates)
        elif row == "b":
            sub = GridSpecFromSubplotSpec(1, 2, subplot_spec=gs[i], width_ratios=[1.25, 1])
            _plot_padding(fig.add_subplot(sub[0]), samples, updates)
            if samples:
                _plot_sample_time(fig.add_subplot(sub[1]), samples)
        else:
            _plot_collection(fig, GridSpecFromSubplotSpec(1, n_task, subplot_spec=gs[i]), coll)
    run = env.get("run")
    fig.suptitle(
        f"Throughput{f' ({run} run)' if run else ''}: jax {env.get('jax_version', '?')}, backend "
        f"{env.get('jax_backend', '?')}, device {env.get('device', '?')}, {env.get('cpu_count', '?')} CPUs",
        fontsize=13,
    )
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _tape_label(r) -> str:
    if r["batching"] == "tape":
        k = r.get("tape_lanes") or 1
        return f"tape {r['tape_size']}" + (f", {k} lanes" if k > 1 else "")
    return f"segments {r['batch_size']} x {r['segment_length']}"


def plot_tapes(records: list[dict], out) -> Path:
    """The fast-tape comparison (`benchmarks.throughput --only tapes`): per hidden size, valid
    transitions/s of every tape and segment configuration, lean scan and (where measured) the plain
    autodiff scan side by side, each bar labelled with its fraction of the core's peak; below, the
    padding overhead of tapes per lane count on each task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ups = [r for r in _ok(records, "update") if "hidden" in r]
    pads = _ok(records, "lane_padding")
    try:
        _check(ups, ("hidden", "scan_path", "batching", "transitions_per_s", "peak_fraction"))
        _check(pads, ("task", "tape_size", "tape_lanes", "padding_overhead"))
    except KeyError as e:
        raise BenchPlotError(f"a record lacks the field {e}") from None
    if not ups:
        raise BenchPlotError("no fast-tape update record without error in the file: nothing to plot")
    hiddens = sorted({r["hidden"] for r in ups})
    # the best call where recorded: on a shared machine it is the one least slowed by others
    key = "transitions_per_s_best" if all("transitions_per_s_best" in r for r in ups) else "transitions_per_s"
    rows = 1 + bool(pads)
    fig, axes = plt.subplots(rows, len(hiddens), figsize=(7.2 * len(hiddens), 5.6 + 3.6 * bool(pads)),
                             layout="constrained", squeeze=False)
    for ax, hidden in zip(axes[0], hiddens):
        mine = [r for r in ups if r["hidden"] == hidden]
        labels = list(dict.fromkeys(_tape_label(r) for r in mine if r["scan_path"] == "lean"))
        labels += [l for l in dict.fromkeys(_tape_label(r) for r in mine) if l not in labels]
        y = range(len(labels))
        for path, color, dy in (("lean", "tab:blue", -0.2), ("plain", "tab:gray", 0.2)):
            by = {_tape_label(r): r for r in mine if r["scan_path"] == path}
            ys = [i + dy for i, l in enumerate(labels) if l in by]
            vals = [by[l][key] for l in labels if l in by]
            if not vals:
                continue
            ax.barh(ys, vals, height=0.38, color=color, label=f"{path} scan")
            for yy, l in zip(ys, [l for l in labels if l in by]):
                r = by[l]
                ax.text(r[key], yy, f" {_fmt(r[key])}/s, {100 * r[key.replace('transitions_per_s', 'peak_fraction')]:.1f}%"
                        " of peak", va="center", fontsize=8)
        ax.set_yticks(list(y), labels)
        ax.invert_yaxis()
        ax.set_xlabel("valid transitions / s (one double-DQN update" + (", best call)" if key.endswith("best") else ")"))
        ax.set_title(f"exact MPN, hidden {hidden}")
        ax.set_xlim(0, 1.45 * max(r[key] for r in mine))
        ax.legend(loc="lower right", fontsize=8)
    if pads:
        tasks = list(dict.fromkeys(r["task"] for r in pads))
        keys = list(dict.fromkeys((r["tape_size"], r["tape_lanes"]) for r in pads))
        ax = axes[1][0]
        width = 0.8 / len(tasks)
        for j, task in enumerate(tasks):
            by = {(r["tape_size"], r["tape_lanes"]): r["padding_overhead"] for r in pads if r["task"] == task}
            ax.bar([i + (j - (len(tasks) - 1) / 2) * width for i in range(len(keys))],
                   [by.get(k, math.nan) for k in keys], width=width, label=task)
        ax.set_xticks(range(len(keys)), [f"N={n}\nK={k}" for n, k in keys], fontsize=8)
        ax.set_ylabel("padding overhead (rows that are not valid transitions)")
        ax.set_title("tape padding per lane count, real episodes (random policy)")
        ax.legend(fontsize=8)
        for ax in axes[1][1:]:
            ax.axis("off")
    r0 = ups[0]
    fig.suptitle(f"Fast tapes: jax {r0.get('jax_version', '?')}, {r0.get('jax_backend', '?')}, one core: "
                 f"{r0.get('one_core')} (XLA_FLAGS '{r0.get('xla_flags', '')}'); core peak "
                 f"{r0['peak_flops_per_s'] / 1e9:.0f} GFLOP/s (f32 matmul)", fontsize=11)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _check(records, fields):
    for r in records:
        for f in fields:
            if f not in r:
                raise KeyError(f)


def main(argv=None) -> int:
    p = OneLineParser(prog=PROG, description="Plot a benchmarks.throughput JSON file.")
    p.add_argument("bench", metavar="BENCH.json", help="file written by python -m benchmarks.throughput --out")
    p.add_argument("--out", required=True, metavar="FIG.png", help="PNG file to write")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    try:
        if out.is_dir():
            raise BenchPlotError(f"--out {out}: is a directory")
        if not out.parent.is_dir():
            raise BenchPlotError(f"--out {out}: folder {out.parent} does not exist")
        if out.suffix.lower() != ".png":
            raise BenchPlotError(f"--out {out}: expected a .png file name")
        for path in (out, out.with_name(out.stem + "_scan.png")):  # both before any work
            try:
                check_writable(path, "--out")
            except PlotError as e:
                raise BenchPlotError(str(e)) from None
        records = load_records(args.bench)
        if any(r.get("kind") == "update" and "hidden" in r for r in records):  # --only tapes
            plot_tapes(records, out)
            print(f"wrote {out}")
            return 0
        scan_records = [dict(r, kind=r["pass"]) for r in records if r.get("kind") == "scan" and "pass" in r]
        if not scan_records or len(scan_records) < len(records):
            plot(records, out)  # raises BenchPlotError when there is nothing to plot
            print(f"wrote {out}")
        if scan_records:  # the exact-MPN scan comparison: a log-log plot of its own
            from benchmarks import scan

            scan_out = out.with_name(out.stem + "_scan.png") if len(scan_records) < len(records) else out
            scan.plot(scan_records, str(scan_out))
            print(f"wrote {scan_out}")
    except BenchPlotError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system changed under us after the checks
        print(f"{PROG}: error: cannot write {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
