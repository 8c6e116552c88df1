"""Behaviour fingerprint: did a change alter what training does?

    python -m benchmarks.fingerprint --out DIR [--only NAME ...]   # run the set below into DIR
    python -m benchmarks.fingerprint --compare OLD NEW              # compare two such folders

Runs a fixed set of experiment files (every task's tape_mpn.yaml; tape_gru, tape_mpn_pre and the
segment settings of the three tuned tasks; both backends; one and two seeds per program) with a
fixed seed and a tiny budget (3,072 env steps, a row every 1,000), then compares, run by run, every
metrics.csv column but wall_s, the summary (wall times and device aside) and the trained parameters
byte for byte. A refactoring that claims to keep behaviour must leave all three equal; the compare
mode prints one line per run and exits 1 on any difference.
"""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from oneline import OneLineParser

TINY = ["train.total_env_steps=3072", "train.learning_starts=1024", "eval.every_env_steps=1000",
        "eval.trials=100", "eval.final_trials=100", "eval.num_envs=16"]
# the neurogym backend: later updates, so that every env has ended an episode before the first one
HOST_TINY = ["train.total_env_steps=5120", "train.learning_starts=3328", "eval.every_env_steps=1280",
             "eval.trials=100", "eval.final_trials=100", "eval.num_envs=16"]
THREE = ("perceptual_decision_making", "delay_match_sample", "context_decision_making")
IGNORED_SUMMARY = {"wall_s", "target_reached_wall_s", "device", "jax_version"}


def runs() -> list[tuple[str, list[str]]]:
    """(name, command line after `python`) of every run in the set."""
    out = []
    for task_dir in sorted(Path("experiments").iterdir()):
        if (task_dir / "tape_mpn.yaml").is_file():
            out.append((f"jax/{task_dir.name}/tape_mpn", ["tape_dqn.py", str(task_dir / "tape_mpn.yaml")]))
    for task in THREE:
        d = Path("experiments") / task
        out.append((f"jax/{task}/tape_gru", ["tape_dqn.py", str(d / "tape_gru.yaml")]))
        out.append((f"jax/{task}/tape_mpn_pre", ["tape_dqn.py", str(d / "tape_mpn_pre.yaml")]))
        out.append((f"jax/{task}/segment_mpn_10", ["segment_dqn.py", str(d / "segment_mpn_10.yaml")]))
        out.append((f"jax/{task}/segment_mpn_20_drqn", ["segment_dqn.py", str(d / "segment_mpn_20_drqn.yaml")]))
    pdm = Path("experiments/perceptual_decision_making")
    out.append(("jax/pdm_tape_mpn_2seeds", ["tape_dqn.py", str(pdm / "tape_mpn.yaml"), "--seeds", "2"]))
    host = ["--set", "env.backend=neurogym"]
    for task in THREE:
        d = Path("experiments") / task
        out.append((f"neurogym/{task}/tape_mpn", ["tape_dqn.py", str(d / "tape_mpn.yaml"), *host]))
    out.append(("neurogym/pdm_tape_gru", ["tape_dqn.py", str(pdm / "tape_gru.yaml"), *host]))
    out.append(("neurogym/pdm_segment_mpn_10", ["segment_dqn.py", str(pdm / "segment_mpn_10.yaml"), *host]))
    out.append(("neurogym/pdm_tape_mpn_2seeds", ["tape_dqn.py", str(pdm / "tape_mpn.yaml"), "--seeds", "2", *host]))
    return out


def run_all(out: Path, only: list[str] | None) -> int:
    failed = 0
    for name, cmd in runs():
        if only and not any(o in name for o in only):
            continue
        folder = out / name
        if folder.exists():
            print(f"have {name}")
            continue
        sets = [x for s in (HOST_TINY if name.startswith("neurogym/") else TINY) for x in ("--set", s)]
        full = [sys.executable, *cmd, *sets, "--seed", "0", "--out", str(folder), "--no-progress"]
        r = subprocess.run(full, capture_output=True, text=True)
        print(f"{'ok' if r.returncode == 0 else 'FAILED'} {name}", flush=True)
        if r.returncode:
            failed += 1
            print(r.stderr[-2000:], file=sys.stderr)
    return 1 if failed else 0


def _seed_dirs(folder: Path) -> list[Path]:
    subs = sorted(p for p in folder.glob("seed*") if p.is_dir())
    return subs or [folder]


def fingerprint(d: Path) -> dict:
    """metrics rows without wall_s, the summary without wall times, and the parameters' hash."""
    with open(d / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]
    summary = {k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k not in IGNORED_SUMMARY}
    params = hashlib.sha256((d / "params.msgpack").read_bytes()).hexdigest()
    return dict(rows=rows, summary=summary, params=params)


def compare(old: Path, new: Path, only: list[str] | None = None) -> int:
    """One line per run: same, or what differs. Columns present only in NEW (new metrics) are
    reported but do not count as a difference."""
    bad = 0
    for name, _ in runs():
        if only and not any(o in name for o in only):
            continue
        a_dir, b_dir = old / name, new / name
        if not a_dir.exists() or not b_dir.exists():
            print(f"missing {name}")
            bad += 1
            continue
        for a_seed, b_seed in zip(_seed_dirs(a_dir), _seed_dirs(b_dir)):
            label = name + ("" if a_seed == a_dir else f"/{a_seed.name}")
            a, b = fingerprint(a_seed), fingerprint(b_seed)
            diffs = []
            added = sorted(set(b["rows"][0]) - set(a["rows"][0])) if a["rows"] and b["rows"] else []
            if len(a["rows"]) != len(b["rows"]):
                diffs.append(f"{len(a['rows'])} rows vs {len(b['rows'])}")
            else:
                for i, (ra, rb) in enumerate(zip(a["rows"], b["rows"])):
                    cols = [k for k in ra if ra[k] != rb.get(k)]
                    if cols:
                        diffs.append(f"row {i}: {', '.join(cols)}")
                        break
            keys = [k for k in set(a["summary"]) | set(b["summary"]) if a["summary"].get(k) != b["summary"].get(k)]
            if keys:
                diffs.append(f"summary: {', '.join(sorted(keys))}")
            if a["params"] != b["params"]:
                diffs.append("params differ")
            extra = f" (new columns: {', '.join(added)})" if added else ""
            print(f"{'same' if not diffs else 'DIFFERENT'} {label}{extra}{'' if not diffs else ': ' + '; '.join(diffs)}")
            bad += bool(diffs)
    print(f"{bad} run(s) differ" if bad else "all runs the same")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m benchmarks.fingerprint", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="run the set into this folder (runs already there are kept)")
    p.add_argument("--only", nargs="*", help="only runs whose name contains one of these")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    a = p.parse_args(argv)
    if a.compare:
        for d in map(Path, a.compare):  # a folder of no fingerprint would read as "every run differs"
            if not (d / "jax").is_dir() and not (d / "neurogym").is_dir():
                p.error(f"--compare {d}: not a folder written by --out (no jax/ or neurogym/ in it)")
        return compare(Path(a.compare[0]), Path(a.compare[1]), a.only)
    if not a.out:
        p.error("give --out DIR or --compare OLD NEW")
    return run_all(Path(a.out), a.only)


if __name__ == "__main__":
    sys.exit(main())
