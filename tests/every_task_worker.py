"""Worker of tests/test_every_task_checkpoint.py (run as a script, not collected by pytest).

    python tests/every_task_worker.py OUT_DIR TASK [TASK ...]

Imports the project (and neurogym) once, without starting JAX's backend, then forks one child per
task, two at a time, so that no run pays the imports again. A child runs the uninterrupted
reference run, then the same run again, which the parent kills with SIGKILL as soon as a
checkpoint and two metrics rows are on disk (it reuses the reference's compiled programs, so it
gets there fast). Then two children `--resume` the killed runs one after another. Compiled
programs are also shared between children through the persistent compile cache. Prints one JSON line: per task the exit statuses and whether the
resumed run's metrics.csv and summary.json equal the reference's (wall times aside)."""
import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import jax._src.xla_bridge as xla_bridge  # noqa: E402

from collector.ngym_compat import import_neurogym  # noqa: E402
from training import cli_main  # noqa: E402

TINY = """\
env: {{task: {task}, backend: neurogym, num_envs: 2}}
episode: {{trials: 1, max_steps: 300}}
model: {{memory_kwargs: {{hidden: 4, input_proj: 2}}, head: [4]}}
train: {{total_env_steps: 1024, steps_per_iter: 8, updates_per_iter: 1, learning_starts: 32, buffer_capacity: 1024}}
tape: {{size: 512}}
checkpoint: {{every_updates: 2}}
eval: {{every_env_steps: 256, trials: 2, final_trials: 2, num_envs: 2}}
"""
PARALLEL = 2


def fork(job, log: Path) -> int:
    """Run job() in a forked child (its output to `log`, its exit status job's return value);
    returns the child's pid."""
    assert not xla_bridge.backends_are_initialized()  # forking after JAX starts its threads can hang
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        status = 1
        try:
            status = job()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    return pid


def checkpointed(out: Path) -> bool:
    metrics = out / "metrics.csv"
    return (out / "checkpoint.pkl").exists() and metrics.exists() and len(metrics.read_bytes().splitlines()) >= 3


def rows(path: Path):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(open(path / "metrics.csv"))]


def summary(path: Path):
    return {k: v for k, v in json.loads((path / "summary.json").read_text()).items() if "wall" not in k}


def main(out: Path, tasks: list[str]) -> dict:
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "xla-cache"))
    import_neurogym()  # once, in the parent: every child inherits it
    for kind in ("killed", "ref", "logs"):
        (out / kind).mkdir(parents=True, exist_ok=True)
    files = {}
    for task in tasks:
        files[task] = out / f"{task}.yaml"
        files[task].write_text(TINY.format(task=task))
    result = {t: {} for t in tasks}

    def ref_then_killed(task):
        """The reference run, then the same run again, to be killed: it reuses the programs the
        reference compiled in this process, so it reaches its first checkpoint quickly."""
        def job():
            result_ref = cli_main([str(files[task]), "--out", str(out / "ref" / task), "--no-progress"], "tape")
            (out / "logs" / f"ref-{task}.status").write_text(str(result_ref))
            return cli_main([str(files[task]), "--out", str(out / "killed" / task), "--no-progress"], "tape")
        return job

    def resumes(group):
        def job():
            for task in group:
                status = cli_main(["--resume", str(out / "killed" / task), "--no-progress"], "tape")
                (out / "logs" / f"resume-{task}.status").write_text(str(status))
            return 0
        return job

    queue, running = list(tasks), {}
    while queue or running:
        while queue and len(running) < PARALLEL:
            task = queue.pop(0)
            running[fork(ref_then_killed(task), out / "logs" / f"{task}.log")] = task
        for pid, task in running.items():
            if (out / "logs" / f"ref-{task}.status").exists() and checkpointed(out / "killed" / task):
                os.kill(pid, signal.SIGKILL)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.005)
            continue
        task = running.pop(pid)
        result[task]["killed"] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    killed = [t for t in tasks if result[t]["killed"] == -signal.SIGKILL]
    pids = [fork(resumes(killed[i::PARALLEL]), out / "logs" / f"resume-{i}.log") for i in range(PARALLEL)]
    for pid in pids:
        os.waitpid(pid, 0)
    for task in tasks:
        r = result[task]
        for kind in ("ref", "resume"):
            f = out / "logs" / f"{kind}-{task}.status"
            r[kind] = int(f.read_text()) if f.exists() else None
        if r["resume"] == 0 and r["ref"] == 0:
            r["same_metrics"] = rows(out / "killed" / task) == rows(out / "ref" / task)
            r["same_summary"] = summary(out / "killed" / task) == summary(out / "ref" / task)
            r["rows"] = [rows(out / "killed" / task), rows(out / "ref" / task)]
        else:
            r["log"] = (out / "logs" / f"{task}.log").read_text()[-1500:]
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
