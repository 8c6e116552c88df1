"""Every registered NeuroGym task with discrete actions survives a checkpoint: a tiny run on the
neurogym backend, checkpointing every two updates, is killed with SIGKILL after a checkpoint,
resumed with --resume, and ends with exit 0 and exactly the metrics and summary of an
uninterrupted run. The checkpoint carries every random-number state the envs hold (trial RNG,
timing samplers' RNGs, action-space sampler), so the envs continue exactly.

One task is not reproducible bit for bit even without any interruption: HierarchicalReasoning-v0.
Its env streams are (the same trials, rewards and evaluations in two processes), but the learner's
floats differ in the third digit in about one run in three, between two plain runs of the same
config, also with one XLA thread pinned to one core and also on the code before checkpoints were
changed; the cause is below this project (XLA on CPU with that task's shapes). For it the test
checks the exact columns (steps, updates, epsilon) and the learner's figures to 10%.

Kept cheap by tests/every_task_worker.py: all the killed runs in one process (a thread each, held
after a checkpoint until the process is killed), the references in another beside it, and the
resumes here, so that imports and compiled programs are shared."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from collector.ngym_compat import make_env, registered_tasks

ROOT = Path(__file__).resolve().parents[1]


def rows(path):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(open(path / "metrics.csv"))]


def summary(path):
    return {k: v for k, v in json.loads((path / "summary.json").read_text()).items() if "wall" not in k}


def discrete_tasks() -> list[str]:
    """Every registered task that builds with its defaults and has discrete actions."""
    out = []
    for task in registered_tasks():
        try:
            env = make_env(task)
        except Exception:  # e.g. AnnubesEnv-v0 needs arguments of its own
            continue
        if hasattr(env.action_space, "n"):
            out.append(task)
    return out


NOT_BITWISE = {"HierarchicalReasoning-v0"}
EXACT = ("env_steps", "updates", "epsilon")


def close(a: dict, b: dict) -> bool:
    """Rows of metrics.csv equal on the exact columns, within 10% on the learner's figures."""
    for k in a:
        if k in EXACT:
            if a[k] != b[k]:
                return False
        elif k in ("loss", "q_mean") and a[k] not in ("", "nan"):
            if abs(float(a[k]) - float(b[k])) > 0.1 * abs(float(b[k])) + 1e-6:
                return False
    return True


def test_every_discrete_task_survives_sigkill_and_resume(tmp_path):
    from cli import cli_main

    tasks = discrete_tasks()
    assert len(tasks) >= 27, tasks  # neurogym 2.3.1: 26 native discrete tasks plus Null-v0
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla"))
    worker = [sys.executable, "tests/every_task_worker.py"]
    # the killed runs (one process, SIGKILLed once every run has a checkpoint) beside the references
    procs = {mode: subprocess.Popen([*worker, mode, str(tmp_path), *tasks], cwd=ROOT, env=env, text=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for mode in ("killed", "ref")}
    outs = {mode: p.communicate(timeout=900) for mode, p in procs.items()}
    assert procs["killed"].returncode == -signal.SIGKILL, outs["killed"][1][-3000:]
    assert procs["ref"].returncode == 0, outs["ref"][1][-3000:]
    held = json.loads(outs["killed"][0].strip().splitlines()[-1])
    refs = json.loads(outs["ref"][0].strip().splitlines()[-1])
    for task in tasks:
        assert held[task] == "held" and refs[task] == 0, (task, held[task], refs[task])
        killed, ref = tmp_path / "killed" / task, tmp_path / "ref" / task
        assert not (killed / "summary.json").exists() and rows(killed) != rows(ref)
        assert cli_main(["--resume", str(killed), "--no-progress"], "tape") == 0, task
        if task in NOT_BITWISE:
            assert len(rows(killed)) == len(rows(ref)) and all(map(close, rows(killed), rows(ref))), task
        else:
            assert rows(killed) == rows(ref), task
            assert summary(killed) == summary(ref), task
