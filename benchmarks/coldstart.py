"""Cold start: where the seconds between the command and the first training iteration go.

    python -m benchmarks.coldstart [--runs 3] [--experiment experiments/perceptual_decision_making/tape_mpn.yaml]
                                   [--json OUT.json] [--set key=value ...]

Runs the training command (`tape_dqn.py EXPERIMENT --out <tmp> --no-progress`, `segment_dqn.py`
for a segment experiment) in a subprocess, first with an empty persistent compile cache (a fresh
JAX_COMPILATION_CACHE_DIR) and then again with the cache that run filled ("warm"), `--runs`
times each, and stops every run with SIGTERM once its first metrics row is written.
JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS is removed from the child's environment (the command's
own default applies). The child runs with MPN_DQN_TIMING=1, under which cli.py prints to stderr
`MPN_DQN_TIMING <unix time> <label>` at: `cli` (cli.py starts importing), `imports`, `config`
(loaded and checked), `probed` (the task probed), `checked` (network and memory checked),
`train` (run folders made, the driver starts), `backend` (backend built: initial state made),
`run` (the driver's first call to run iterations), `row` (first metrics row), and one line per
XLA program compiled or loaded from the cache (`compile <s> <name>`, after `cache_hit` for a
load) and per trace of a jitted function (`trace <s> <name>`).

Reported, each the median over the runs, in seconds from the command (the launch of the
subprocess): the imports done, the set-up done (`train`), the first training iteration (the
driver has called `run` and the training program is ready to execute: the jax backend's
`iterate` compiled or loaded; on another backend the first XLA program after `run`), the first
metrics row; the time spent importing (`cli` to `imports`), in XLA compilation or cache loads
and in tracing (union of the intervals, so nested traces count once), and the number of XLA
programs before the first row (of which loaded from the cache).
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from oneline import OneLineParser

MARK = "MPN_DQN_TIMING"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "experiments/perceptual_decision_making/tape_mpn.yaml"
# (key, what it is): the figures reported, in this order
FIGURES = [
    ("imports", "imports done (s from the command)"),
    ("setup", "set-up done: driver starts (s)"),
    ("first_iter", "first training iteration (s)"),
    ("first_row", "first metrics row (s)"),
    ("python_s", "interpreter start to cli.py (s)"),
    ("import_s", "importing cli.py (s)"),
    ("compile_s", "XLA compile or cache load (s)"),
    ("trace_s", "tracing jitted functions (s)"),
    ("programs", "XLA programs before the first row"),
    ("cache_hits", "  of which loaded from the cache"),
]


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def parse(lines, launch: float) -> dict:
    """The figures of one run from its stderr lines (only `MPN_DQN_TIMING` lines are read);
    launch: the unix time the command started. A mark the run never printed is None."""
    marks, compiles, traces, hits = {}, [], [], 0
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[0] != MARK:
            continue
        t, label = float(parts[1]) - launch, parts[2]
        if label == "compile" and len(parts) >= 4:
            compiles.append((t - float(parts[3]), t, " ".join(parts[4:])))
        elif label == "trace" and len(parts) >= 4:
            traces.append((t - float(parts[3]), t))
        elif label == "cache_hit":
            hits += 1 if "row" not in marks else 0
        else:
            marks.setdefault(label, t)
    row = marks.get("row")
    before = (lambda t: True) if row is None else (lambda t: t <= row)
    run = marks.get("run")
    # the training program is ready: the jax backend's `iterate` compiled or loaded (it may be
    # before the driver's first call, if a backend prepares it ahead); another backend's: the
    # first program after that call
    ready = [end for _, end, name in compiles if "iterate" in name] or [end for _, end, _ in compiles
                                                                        if run is not None and end >= run]
    first_iter = None if run is None else max(run, min(ready)) if ready else run
    return dict(
        imports=marks.get("imports"), setup=marks.get("train"), first_iter=first_iter, first_row=row,
        python_s=marks.get("cli"),
        import_s=None if "imports" not in marks or "cli" not in marks else marks["imports"] - marks["cli"],
        compile_s=_union([s[:2] for s in compiles if before(s[1])]), trace_s=_union([s for s in traces if before(s[1])]),
        programs=sum(1 for s in compiles if before(s[1])), cache_hits=hits, marks=marks,
    )


def run_once(experiment: str, cache: Path, out: Path, sets: list[str], timeout: float) -> dict:
    """One command with the compile cache `cache`, stopped after its first metrics row."""
    script = "segment_dqn.py" if Path(experiment).name.startswith("segment") else "tape_dqn.py"
    cmd = [sys.executable, script, experiment, "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), MPN_DQN_TIMING="1")
    for name in ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_LOG_COMPILES"):
        env.pop(name, None)
    lines = []
    launch = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(MARK) and line.split()[2:3] == ["row"]:
                proc.send_signal(signal.SIGTERM)  # the run checkpoints and stops
                break
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    result = parse(lines, launch)
    if result["first_row"] is None:
        tail = "".join(line for line in lines if not line.startswith(MARK))[-2000:]
        raise RuntimeError(f"the run wrote no metrics row (exit status {proc.returncode}):\n{tail}")
    return result


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(cold: list[dict], warm: list[dict]) -> str:
    """A text table: one line per figure, the medians with an empty and with a warm cache."""
    lines = [f"{'':42s} {'empty cache':>12s} {'warm cache':>12s}   (median of {len(cold)} runs)"]
    for key, what in FIGURES:
        cells = []
        for runs in (cold, warm):
            m = _median([r[key] for r in runs])
            cells.append("-" if m is None else f"{m:.0f}" if key in ("programs", "cache_hits") else f"{m:.2f}")
        lines.append(f"{what:42s} {cells[0]:>12s} {cells[1]:>12s}")
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m benchmarks.coldstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs with an empty and with a warm cache (default 3)")
    p.add_argument("--experiment", default=DEFAULT, help=f"experiment YAML (default {DEFAULT})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed on to the command")
    p.add_argument("--json", help="also write every run's figures to this JSON file")
    p.add_argument("--timeout", type=float, default=600, help="seconds one run may take to its first row")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if not (ROOT / args.experiment).is_file() and not Path(args.experiment).is_file():
        p.error(f"--experiment {args.experiment}: no such file")
    cold, warm = [], []
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        for i in range(args.runs):
            cache = Path(tmp) / f"xla{i}"
            for kind, runs in (("empty", cold), ("warm", warm)):
                try:
                    r = run_once(args.experiment, cache, Path(tmp) / f"run{i}-{kind}", args.set, args.timeout)
                except RuntimeError as e:
                    print(f"coldstart: error: {e}", file=sys.stderr)
                    return 1
                runs.append(r)
                print(f"run {i + 1} {kind:5s} cache: first iteration {r['first_iter']:.2f} s, first row "
                      f"{r['first_row']:.2f} s, {r['programs']} programs ({r['cache_hits']} from the cache)",
                      file=sys.stderr)
    print(f"{args.experiment}; {os.cpu_count()} CPUs; load average before {load_before}, after {_load()}")
    print(report(cold, warm))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(experiment=args.experiment, set=args.set, cold=cold, warm=warm,
                                                   load_before=load_before, load_after=_load()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
