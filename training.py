"""The host driver: one training loop for both backends (Stoix's "driver", apart from the learner).

`train` runs the seeds of a run program group by group (all seeds at once, vmapped, on the jax
backend; one after another on the neurogym backend). For each group, `drive` asks its backend
(backends.py) to run iterations and owns everything around them, written once:

- the schedule: a metrics row every ceil(eval.every_env_steps / env steps per iteration)
  iterations and after the last one; a checkpoint every ceil(checkpoint.every_updates /
  train.updates_per_iter) iterations, at the start, at the end and on SIGINT/SIGTERM;
- the rows: each seed's `Tracker` appends them to its run folder (runs.py) and notes when the
  target was first reached;
- the non-finite guard: a non-finite loss or parameter stops the run naming the update, leaving
  the last good checkpoint in place (exit status 3);
- checkpoints, one schema for both backends (below), and `--resume` from them: metrics.csv is first
  cut back to the rows the checkpoint had seen (cli.py), so no row is lost or written twice.

Checkpoint (checkpoint.py), a dict of plain data: backend, batching, config, seeds (the program's),
group (index of the seed group being trained), fresh (True: that group has not started), finished,
done (iterations of the group run), elapsed (seconds), rows and trackers (per seed of the group),
state (the backend's `state()`), plus run_id and format.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

import checkpoint
from backends import Backend, make_backend, restored, seed_groups
from marks import mark
from runs import RunFolder, RunStopped


SIGNALS = (signal.SIGINT, signal.SIGTERM)
SETUP_GRACE_S = 3.0  # before training: nothing to save, so a main thread not back by then is stuck
TRAIN_GRACE_S = 60.0  # once a block has run: time to end the block in progress and write a checkpoint


class StopFlag:
    """SIGINT/SIGTERM, noted: the driver checks `signum` between blocks of iterations and stops
    there, writing a checkpoint once training has begun.

    A Python signal handler runs only when the main thread runs Python code, so a main thread
    stuck in native code (an XLA program that hangs, a long compilation) would never stop. While
    `installed`, a watcher thread hears every signal at once (signal.set_wakeup_fd) and ends the
    process itself when the main thread has not ended it in time: SETUP_GRACE_S after the signal
    until the driver's first block of iterations has run (set-up and the first compilation: there
    is no progress to save), TRAIN_GRACE_S from then on (`training`), at once on a second signal.
    It never cuts a checkpoint write short (`writing` is held around each)."""

    def __init__(self):
        self.signum = None
        self.training = False  # set by the driver while its loop runs
        self.writing = threading.Lock()

    def __call__(self, signum, frame):
        self.signum = signum

    @contextlib.contextmanager
    def installed(self, prog: str, on_force=None):
        """Catch SIGINT/SIGTERM for the block (the previous handlers come back after it).
        on_force() -> str runs in the watcher before a forced stop (the main thread is stuck) and
        returns the end of the one-line message: what was kept."""
        previous = {sig: signal.signal(sig, self) for sig in SIGNALS}
        r, w = os.pipe()
        os.set_blocking(w, False)
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        watcher = threading.Thread(target=self._watch, args=(r, prog, on_force), daemon=True,
                                   name="signal-watcher")
        watcher.start()
        try:
            yield self
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(w)  # the watcher reads end-of-file and returns: nothing left to force
            watcher.join()
            os.close(r)

    def _watch(self, r: int, prog: str, on_force) -> None:
        deadline, heard = None, []
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if select.select([r], [], [], wait)[0]:
                data = os.read(r, 64)
                if not data:
                    return
                heard += [b for b in data if b in SIGNALS]
                if not heard:
                    continue
                if len(heard) == 1 and deadline is None:
                    grace = TRAIN_GRACE_S if self.training else SETUP_GRACE_S
                    deadline = time.monotonic() + grace
                    continue
                if len(heard) == 1:
                    continue
                why = f"a second {signal.Signals(heard[-1]).name}"
            else:
                why = f"the program did not stop within {grace:.0f} s of {signal.Signals(heard[0]).name}"
            with self.writing:  # never in the middle of a checkpoint write
                try:
                    kept = on_force() if on_force else "nothing more was written"
                except Exception as e:  # the process ends anyway; say what went wrong
                    kept = f"could not tidy up ({e})"
                print(f"\n{prog}: {why}: stopped it; {kept}", file=sys.stderr, flush=True)
                os._exit(128 + heard[0])


def _plain(v):
    """A JSON/CSV-friendly Python number (float32 results rounded to the digits they carry)."""
    if isinstance(v, (np.ndarray, jax.Array, np.generic)):
        v = np.asarray(v).item()
        if isinstance(v, float):
            return float(f"{v:.6g}")
    return v


class Tracker:
    """One seed's bookkeeping: metrics.csv rows, the steps and seconds to the target, the summary."""

    def __init__(self, cfg: dict, batching: str, seed: int, run: RunFolder | None, saved: dict | None = None,
                 seeds_in_program: int = 1):
        self.cfg, self.batching, self.seed, self.run = cfg, batching, seed, run
        self.seeds_in_program = seeds_in_program  # seeds trained side by side: wall times are the program's
        self.last = dict(eval_performance=float("nan"), loss=float("nan"))
        self.reached = None
        self.rows = 0
        if saved:
            self.reached, self.rows, self.last = saved["reached"], saved["rows"], saved["last"]

    def saved(self) -> dict:
        return dict(reached=self.reached, rows=self.rows, last=self.last)

    def row(self, **row) -> dict:
        row = {k: _plain(v) for k, v in row.items()}
        if self.run is not None:
            self.run.row(row)
        self.rows += 1
        self.last = row
        target = self.cfg["eval"]["target"]
        if self.reached is None and target is not None and row["eval_performance"] >= target:
            self.reached = dict(env_steps=row["env_steps"], wall_s=row["wall_s"])
        return row

    def finish(self, final: dict, env_steps: int, updates: int, wall: float, params) -> dict:
        cfg = self.cfg
        summary = dict(
            experiment=cfg["name"], batching=self.batching, backend=cfg["env"]["backend"], task=cfg["env"]["task"],
            memory=cfg["model"]["memory"], seed=self.seed, env_steps=int(env_steps), updates=int(updates),
            wall_s=round(wall, 3), final_eval_performance=_plain(final["performance"]),
            final_eval_reward_per_trial=_plain(final["reward_per_trial"]), final_eval_trials=int(final["trials"]),
            target=cfg["eval"]["target"],
            target_reached_env_steps=self.reached and self.reached["env_steps"],
            target_reached_wall_s=self.reached and self.reached["wall_s"],
            eval_trials=cfg["eval"]["trials"], seeds_in_program=self.seeds_in_program,
            device=str(jax.devices()[0]), jax_version=jax.__version__,
        )
        if self.run is not None:
            self.run.finish(summary, params)
        return summary


class Checkpointer:
    """Writes one run program's checkpoints into its top folder: first puts the metrics rows they
    count on disk, stamps the run id, and turns a failed write (full disk, folder gone) into one
    line; the previous checkpoint then stays whole."""

    def __init__(self, top: Path, run_id: str, runs, resume_at: Path | None = None):
        """resume_at: the folder a user gives to --resume (default top; a sweep's top folder)."""
        self.top, self.run_id, self.runs = Path(top), run_id, runs
        self.resume_at = Path(resume_at or top)

    def save(self, data: dict) -> None:
        for r in self.runs:
            if r is not None:
                r.sync()
        try:
            checkpoint.save(self.top, dict(data, run_id=self.run_id))
        except OSError as e:
            raise RunStopped(f"cannot write the checkpoint in {self.top}: {e.strerror or e}; the previous one is kept", 2) from None



def _non_finite(seed: int, update_index: int, ckpt) -> RunStopped:
    where = f"; the last good checkpoint is {ckpt.top / checkpoint.FILENAME}" if ckpt else ""
    return RunStopped(f"non-finite loss or parameters at update {update_index} (seed {seed}); run stopped{where}", 3)


def _interrupted(stop: StopFlag, env_steps: int, ckpt) -> RunStopped:
    name = signal.Signals(stop.signum).name
    where = f"; checkpoint written, continue with --resume {ckpt.resume_at}" if ckpt else ""
    return RunStopped(f"{name} at {env_steps} env steps{where}", 128 + stop.signum)


def train(cfg: dict, batching: str, runs=None, progress: bool = True, seeds=None, ckpt=None,
          resume: dict | None = None, stop: StopFlag | None = None) -> list[dict]:
    """Train a double DQN with tape (`batching="tape"`) or segment batching on cfg, once per seed
    (default: cfg["seed"]); runs: one RunFolder (or None) per seed. ckpt: a Checkpointer (None: no
    checkpoints); resume: a loaded checkpoint to continue from. Returns one summary per seed
    trained by this call."""
    seeds = list(seeds or [cfg["seed"]])
    runs = list(runs or [None] * len(seeds))
    stop = stop or StopFlag()
    groups = seed_groups(cfg, seeds)
    first = resume["group"] if resume else 0
    at = sum(len(g) for g in groups[:first])  # index of the group's first seed
    summaries = []
    for g in range(first, len(groups)):
        own = resume if (resume and g == first and not resume.get("fresh")) else None
        backend = make_backend(cfg, batching, groups[g])
        mark("backend")
        summaries += drive(backend, cfg, batching, runs[at: at + len(groups[g])], seeds, g, len(groups), ckpt, own,
                           stop, progress)
        at += len(groups[g])
    return summaries


def drive(backend: Backend, cfg: dict, batching: str, runs: list, seeds: list, group: int, n_groups: int,
          ckpt, resume: dict | None, stop: StopFlag, progress: bool, run_cfgs: list | None = None) -> list[dict]:
    """Train one group of seeds to the end (see the module docstring); returns their summaries.
    run_cfgs: each run's own config for its summary and target (a sweep's settings), else cfg."""
    tr, ev = cfg["train"], cfg["eval"]
    per_iter, mine = backend.per_iter, backend.seeds
    total = -(-tr["total_env_steps"] // per_iter)
    per_row = max(1, -(-ev["every_env_steps"] // per_iter))
    every = cfg["checkpoint"]["every_updates"]
    per_ckpt = max(1, -(-every // tr["updates_per_iter"])) if every else total
    done, last_ckpt, elapsed, saved = 0, 0, 0.0, [None] * len(mine)
    if resume is not None:
        backend.restore(restored("state", lambda: resume["state"]))
        done, elapsed, saved = restored("counters", lambda: (
            int(resume["done"]), float(resume["elapsed"]), list(resume["trackers"])))
        last_ckpt = done
        if len(saved) != len(mine):
            raise checkpoint.CheckpointError(f"the checkpoint holds {len(saved)} seeds' bookkeeping, expected {len(mine)}")
    run_cfgs = run_cfgs or [cfg] * len(mine)
    trackers = restored("metrics bookkeeping", lambda: [
        Tracker(c, batching, s, r, sv, seeds_in_program=len(mine)) for c, s, r, sv in zip(run_cfgs, mine, runs, saved)])
    t0 = time.perf_counter() - elapsed

    def save(finished=False):
        if ckpt is not None:
            data = dict(
                backend=cfg["env"]["backend"], batching=batching, config=cfg, seeds=seeds, group=group, fresh=False,
                finished=finished, done=done, elapsed=time.perf_counter() - t0, trackers=[t.saved() for t in trackers],
                rows=[t.rows for t in trackers], state=backend.state(),
            )
            with stop.writing:  # the state is fetched first: a stuck device never holds the lock
                ckpt.save(data)

    bar = tqdm(total=total * per_iter, initial=done * per_iter, unit="step", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    if resume is None:
        save()  # from here on the folder can always be resumed, whatever stops the process
    started = False
    while done < total:
        if stop.signum is not None:
            save()
            raise _interrupted(stop, done * per_iter, ckpt)
        n = max(1, min(per_row - done % per_row, per_ckpt - (done - last_ckpt), total - done, backend.max_block))
        if not started:
            mark("run")  # start-up timing (marks.py): the set-up is over
            started = True
        bad = backend.run(n)
        if (bad >= 0).any():
            i = int(np.flatnonzero(bad >= 0)[0])
            raise _non_finite(mine[i], int(bad[i]), ckpt if last_ckpt else None)
        done += n
        # from the first block done (the training program compiled) a signal waits for the block in
        # progress, so that the checkpoint it writes keeps the progress since the last one
        stop.training = True
        if done % per_row == 0 or done == total:
            rows = backend.row()
            if not trackers[0].rows:
                mark("row")
            wall = round(time.perf_counter() - t0, 3)
            for tracker, values in zip(trackers, rows):
                tracker.row(wall_s=wall, **values)
            bar.set_postfix(eval=f"{trackers[0].last['eval_performance']:.3f}", loss=f"{trackers[0].last['loss']:.4f}",
                            eps=f"{float(rows[0]['epsilon']):.3f}", refresh=False)
        if every and done - last_ckpt >= per_ckpt:
            last_ckpt = done
            save()
        bar.update(n * per_iter)
    bar.close()
    if stop.signum is not None:  # a signal during the last block: the final evaluation waits for --resume
        save()
        raise _interrupted(stop, done * per_iter, ckpt)
    wall = time.perf_counter() - t0
    finals = backend.final(ev["final_trials"])
    out = [tracker.finish(final, env_steps, updates, wall, backend.params(i))
           for i, (tracker, final, (env_steps, updates)) in enumerate(zip(trackers, finals, backend.counts()))]
    if group == n_groups - 1:
        save(finished=True)
    elif ckpt is not None:  # this group is done: a resume starts the next one afresh
        with stop.writing:
            ckpt.save(dict(backend=cfg["env"]["backend"], batching=batching, config=cfg, seeds=seeds, group=group + 1,
                           fresh=True, finished=False, rows=[0]))
    stop.training = False  # the next group's (or sweep program's) set-up follows
    return out
