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

Kept cheap by tests/every_task_worker.py: one import, forked children, compiled programs shared."""
import json
import subprocess
import sys
from pathlib import Path

from collector.ngym_compat import make_env, registered_tasks

ROOT = Path(__file__).resolve().parents[1]


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
    tasks = discrete_tasks()
    assert len(tasks) >= 27, tasks  # neurogym 2.3.1: 26 native discrete tasks plus Null-v0
    proc = subprocess.run([sys.executable, "tests/every_task_worker.py", str(tmp_path), *tasks], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for task in tasks:
        r = result[task]
        assert r.get("killed") == -9, (task, r)  # killed after a checkpoint, not finished before
        assert r.get("resume") == 0 and r.get("ref") == 0, (task, r)
        if task in NOT_BITWISE:
            killed, ref = r["rows"]
            assert len(killed) == len(ref) and all(close(a, b) for a, b in zip(killed, ref)), (task, r)
        else:
            assert r["same_metrics"] and r["same_summary"], (task, r)
