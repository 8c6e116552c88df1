"""Sweep throughput: how much a program of many runs gains over programs of few.

    python -m benchmarks.sweep [--out figures/sweep.json] [--runs 1 5 20 80] [--devices 1 2]
                               [--steps 20480] [--compare-steps 100000] [--skip-compare]

1. Throughput against runs per program: `python -m sweep` on PerceptualDecisionMaking-v0
   (tape_mpn.yaml) with R seeds in one program, on D local devices (D > 1: CPU devices forced
   with XLA_FLAGS=--xla_force_host_platform_device_count=D over the same cores), each in a fresh
   process: total env steps per second between the first and the last metrics row (steady
   training, evaluation included, compilation excluded), and the wall time of the whole command.
2. A 8-setting x 5-seed sweep (train.lr x model.memory_kwargs.eta_init, `--compare-steps` env steps
   per run) as ONE `python -m sweep` command against the same 40 runs as 8 `tape_dqn.py --seeds 5`
   programs run one after the other: wall time of each, compilation included (warm compile cache
   for neither: each command gets an empty one).

Everything runs side by side in one invocation on the same cores; the JSON records the machine.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from oneline import OneLineParser

EXPERIMENT = "experiments/perceptual_decision_making/tape_mpn.yaml"
LRS = ("0.001", "0.002", "0.003", "0.004")
ETAS = ("0.1", "0.5")


def _run(cmd: list[str], devices: int = 1) -> float:
    """Run a command with an empty compile cache; returns its wall seconds."""
    env = dict(os.environ)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    with tempfile.TemporaryDirectory() as cache:
        env["JAX_COMPILATION_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"benchmarks.sweep: {' '.join(cmd[:4])} ... failed: {proc.stderr.strip().splitlines()[-1:]}")
    return wall


def _steady_rate(run_dirs: list[Path]) -> float:
    """Total env steps per second of the runs of one program between its first and last row."""
    steps, first_wall, last_wall = 0, None, None
    for d in run_dirs:
        rows = list(csv.DictReader(open(d / "metrics.csv")))
        steps += int(rows[-1]["env_steps"]) - int(rows[0]["env_steps"])
        first_wall, last_wall = float(rows[0]["wall_s"]), float(rows[-1]["wall_s"])
    return steps / max(last_wall - first_wall, 1e-9)


def throughput(out: Path, runs: list[int], devices: list[int], steps: int) -> list[dict]:
    records = []
    for d in devices:
        for r in runs:
            folder = out / f"rate_d{d}_r{r}"
            wall = _run([sys.executable, "-m", "sweep", EXPERIMENT, "--seeds", str(r), "--out", str(folder),
                         "--no-progress", "--set", f"train.total_env_steps={steps}", "--set", "eval.every_env_steps=5120",
                         "--set", "eval.trials=500"], d)
            rate = _steady_rate(sorted(folder.glob("default/seed*")))
            records.append(dict(kind="rate", devices=d, runs=r, env_steps_per_run=steps, steady_env_steps_per_s=rate,
                                wall_s=wall))
            print(f"devices {d}, runs {r:3d}: {rate:10.0f} env steps/s (steady), command {wall:.1f} s", flush=True)
    return records


def compare(out: Path, steps: int) -> list[dict]:
    sets = ["--set", f"train.total_env_steps={steps}"]
    t_sweep = _run([sys.executable, "-m", "sweep", EXPERIMENT, "--grid", f"train.lr={','.join(LRS)}",
                    "--grid", f"model.memory_kwargs.eta_init={','.join(ETAS)}", "--seeds", "5",
                    "--out", str(out / "sweep_40"), "--no-progress", *sets])
    print(f"one sweep program, 8 settings x 5 seeds: {t_sweep:.1f} s", flush=True)
    t_sep = 0.0
    for lr in LRS:
        for eta in ETAS:
            t_sep += _run([sys.executable, "tape_dqn.py", EXPERIMENT, "--seeds", "5", "--set", f"train.lr={lr}",
                           "--set", f"model.memory_kwargs.eta_init={eta}", "--out", str(out / f"sep_lr{lr}_eta{eta}"),
                           "--no-progress", *sets])
    print(f"8 programs of --seeds 5, one after the other: {t_sep:.1f} s (ratio {t_sep / t_sweep:.2f})", flush=True)
    return [dict(kind="compare", runs=40, env_steps_per_run=steps, sweep_wall_s=t_sweep, separate_wall_s=t_sep,
                 ratio=t_sep / t_sweep)]


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file to write (the repository's record is "
                   "figures/sweep_benchmark.json, written only when named)")
    p.add_argument("--work", help="folder for the runs (default: a temporary folder)")
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5, 20, 80])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=20480, help="env steps per run of the throughput part")
    p.add_argument("--compare-steps", type=int, default=100_000)
    p.add_argument("--skip-compare", action="store_true")
    a = p.parse_args(argv)
    from plotting.common import PlotError, check_writable

    if not all(1 <= r <= 4096 for r in a.runs) or not all(1 <= d <= 64 for d in a.devices):
        p.error("--runs must lie in [1, 4096] and --devices in [1, 64]")
    if a.steps < 1 or a.compare_steps < 1:
        p.error("--steps and --compare-steps must be positive")
    try:  # before any of the minutes of training
        check_writable(Path(a.out), "--out")
    except PlotError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    if a.work and Path(a.work).exists() and not Path(a.work).is_dir():
        p.error(f"--work {a.work}: exists and is not a folder")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    import platform

    machine = dict(cpu_count=os.cpu_count(), platform=platform.platform(), python=platform.python_version())
    records = throughput(work, a.runs, a.devices, a.steps)
    if not a.skip_compare:
        records += compare(work, a.compare_steps)
    Path(a.out).write_text(json.dumps(dict(machine=machine, records=records), indent=1))
    print(f"wrote {a.out} (runs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
