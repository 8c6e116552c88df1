"""Worker of tests/test_every_task_checkpoint.py (run as a script, not collected by pytest).

    python tests/every_task_worker.py killed OUT_DIR TASK [TASK ...]
    python tests/every_task_worker.py ref    OUT_DIR TASK [TASK ...]

`killed`: starts one tiny neurogym-backend run per task, all in this one process (one thread each,
so that they share this process's imports and compiled programs), through the same functions the
command line uses (`_new_run`, `train`). Each run is held at the first iteration boundary at which
a checkpoint and two metrics rows of it are on disk (its stop flag is read there, and reading it
then waits forever); when every run is held, the process kills itself with SIGKILL. What is on
disk is then exactly what a SIGKILL at that moment leaves.

`ref`: the same runs, uninterrupted, one after another, through `cli_main`.

Both print one JSON line {task: exit status or "held"}."""
import json
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import cli  # noqa: E402
import training  # noqa: E402
from training import StopFlag  # noqa: E402
from collector.ngym_compat import import_neurogym  # noqa: E402

TINY = """\
env: {{task: {task}, backend: neurogym, num_envs: 2}}
episode: {{trials: 1, max_steps: 300}}
model: {{memory_kwargs: {{hidden: 4, input_proj: 2}}, head: [4]}}
train: {{total_env_steps: 1024, steps_per_iter: 8, updates_per_iter: 1, learning_starts: 32, buffer_capacity: 1024}}
tape: {{size: 512}}
checkpoint: {{every_updates: 2}}
eval: {{every_env_steps: 256, trials: 2, final_trials: 2, num_envs: 2}}
"""


def experiment(out: Path, task: str) -> Path:
    path = out / f"{task}.yaml"
    path.write_text(TINY.format(task=task))
    return path


def checkpointed(folder: Path) -> bool:
    metrics = folder / "metrics.csv"
    return (folder / "checkpoint.pkl").exists() and metrics.exists() and len(metrics.read_bytes().splitlines()) >= 3


class HoldAfterCheckpoint(StopFlag):
    """A stop flag for `training.train`: reading it once the run has a checkpoint and two rows on
    disk blocks for good (train reads it between iterations, when nothing is half written)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder, self.held = folder, threading.Event()

    @property
    def signum(self):
        if checkpointed(self.folder):
            self.held.set()
            threading.Event().wait()
        return None

    @signum.setter
    def signum(self, value):  # no signal is sent here; the flag reads the folder
        pass


def killed(out: Path, tasks: list[str]) -> None:
    result, holds, threads = {}, {}, []

    def run(task):
        try:
            args = cli._parser("tape_dqn.py", "tape").parse_args(
                [str(experiment(out, task)), "--out", str(out / "killed" / task)])
            session = cli._new_run(args, "tape_dqn.py", "tape")
            ckpt = training.Checkpointer(session.top, session.run_id, session.runs)
            training.train(session.cfg, "tape", session.runs, False, session.seeds, ckpt, None, holds[task])
            result[task] = "finished"  # ended before it could be held: the test fails on it
        except BaseException as e:  # reported, not raised: the other runs go on
            result[task] = f"{type(e).__name__}: {e}"
        finally:
            holds[task].held.set()

    for task in tasks:
        holds[task] = HoldAfterCheckpoint(out / "killed" / task)
        threads.append(threading.Thread(target=run, args=(task,), daemon=True))
        threads[-1].start()
    for task in tasks:
        holds[task].held.wait()
    for task in tasks:
        result.setdefault(task, "held")
    print(json.dumps(result), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the runs are held where they stand: this is the kill


def ref(out: Path, tasks: list[str]) -> dict:
    return {task: cli.cli_main([str(experiment(out, task)), "--out", str(out / "ref" / task), "--no-progress"],
                                    "tape") for task in tasks}


if __name__ == "__main__":
    mode, out, tasks = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    cli.enable_compile_cache()
    import_neurogym()
    (out / mode).mkdir(parents=True, exist_ok=True)
    if mode == "killed":
        killed(out, tasks)  # never returns
    print(json.dumps(ref(out, tasks)), flush=True)
