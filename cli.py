"""The command line of tape_dqn.py and segment_dqn.py: set up a run program, or reopen one.

`cli_main` parses the arguments, checks everything that can be checked before a folder is made
(the config, the task and its timings, the network, the memory the run needs), makes the run
folders (runs.py) and hands over to the driver (training.train). `--resume DIR` validates an
interrupted run folder and its checkpoint and continues it. Every refusal is one line and exit
status 2; a signal during the set-up leaves nothing behind.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from marks import ON as _TIMING, mark as _mark  # noqa: E402  (imports nothing heavy)
from oneline import OneLineParser

_mark("cli")
import jax  # after the mark: importing jax is most of the start-up
import jax.numpy as jnp
import numpy as np

import buffer as buf
import checkpoint
from backends import make_jax_env, seed_groups
from collector.jax_collector import JaxCollector
from config import ConfigError, check_episode_sizes, check_resolved, load, one_line
from learner import build_network, episode_spec, make_buffer, stores_state
from runs import LOCK_FILE, RUN_FILE, RunFolder, RunLock, RunStopped, atomic_write, make_folder
from training import Checkpointer, StopFlag, train

_mark("imports")


# ---- checks before anything is written -----------------------------------------------------


def _nbytes(tree) -> int:
    """Bytes of a pytree of arrays or ShapeDtypeStructs."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def run_buffer(cfg: dict, batching: str, network, obs_dim: int) -> buf.Buffer:
    """The run's replay buffer (learner.make_buffer); a size it refuses is a ConfigError."""
    example = jax.eval_shape(lambda: network.initial_state(obs_dim)) if stores_state(cfg, batching) else None
    try:
        return make_buffer(cfg, batching, obs_dim, example)
    except ValueError as e:
        raise ConfigError(f"{batching}: {one_line(e)}") from None


def check_resources(cfg: dict, batching: str, network, obs_dim: int, num_actions: int, n_seeds: int) -> None:
    """Refuse at once, before any folder is made, a run whose arrays cannot fit in this machine's
    RAM: the replay buffer, the recording slots of the training and evaluation envs and the
    activations of one update, per seed trained side by side. The message names the key of the
    largest part and quotes the figures."""
    import psutil

    ev, ep = cfg["eval"], cfg["episode"]
    state = _nbytes(jax.eval_shape(lambda: network.initial_state(obs_dim)))  # one env's memory state
    buffer = run_buffer(cfg, batching, network, obs_dim)
    rows = ep["max_steps"] + 1
    store_state = stores_state(cfg, batching)
    record_row = 4 * obs_dim + 9 + (state if store_state else 0)
    hidden = cfg["model"]["memory_kwargs"].get("hidden", 64)
    batch_key = "tape.size" if batching == "tape" else "segment.batch_size"
    # per batch row: the memory state kept for the backward pass, the layer activations and the
    # Q-values, for the online network (with gradients) and the target network
    act_row = state + 4 * (obs_dim + 4 * hidden + 4 * sum(cfg["model"]["head"]) + 2 * num_actions)
    parts = {
        "train.buffer_capacity": buffer.nbytes,
        # per env: its recording slots, and the working set of one policy step (measured: about a
        # dozen copies of the memory state, e.g. W * (1 + M) and its gradient-free temporaries)
        "env.num_envs": cfg["env"]["num_envs"] * (2 * rows * record_row + 12 * state),
        "eval.num_envs": ev["num_envs"] * (rows * (4 * obs_dim + 9) + 12 * state),
        batch_key: 3 * buffer.sizes.rows * act_row,
    }
    seeds_at_once = n_seeds if cfg["env"]["backend"] == "jax" else 1
    need = seeds_at_once * sum(parts.values())
    avail = psutil.virtual_memory().available
    if need > 0.9 * avail:
        key = max(parts, key=parts.get)
        detail = ", ".join(f"{k} {v * seeds_at_once / 2**30:.2f}" for k, v in parts.items())
        raise ConfigError(
            f"{key}: the run needs about {need / 2**30:.2f} GiB ({detail} GiB"
            f"{f', for {seeds_at_once} seeds' if seeds_at_once > 1 else ''}) but only {avail / 2**30:.2f} GiB of memory is available"
        )


def check_iteration_fits(cfg: dict, max_rows: int) -> None:
    """The jax backend adds one iteration's rows to the ring in one piece: they must fit in it."""
    cap = cfg["train"]["buffer_capacity"]
    if max_rows > cap:
        raise ConfigError(
            f"train.buffer_capacity: {cap} rows cannot take one iteration's "
            f"{max_rows} rows (env.num_envs x (train.steps_per_iter + episodes per iteration))"
        )


PROBE_TRIALS = 1024  # trials sampled at start to measure their lengths
PROBE_STEPS = 1_000_000  # most env steps the neurogym probe takes (about 7 s; 0.15 s for 1024 trials of 22)
LONGEST_AUTO_TRIAL = 100_000  # steps; episode.max_steps: auto refuses a longer trial


def check_trials(cfg: dict, env_info: dict, batching: str | None = None) -> None:
    """Refuse timings under which no trial can be learnt: trials of no step at all (every period
    collapsed to nothing, e.g. env.kwargs.dt far above the periods) or trials longer than an
    episode (no trial would ever end inside one, e.g. a tiny env.kwargs.dt). Resolve
    episode.max_steps: auto to episode.trials x the longest trial (in place), or warn in one line
    when a given cap can end episodes inside a trial. env_info['trial_steps']: the lengths of
    sampled trials (empty where none ended)."""
    lengths, ep, task = env_info.get("trial_steps"), cfg["episode"], cfg["env"]["task"]
    kw = cfg["env"]["kwargs"]
    knob = "env.kwargs.dt" if "dt" in kw else "env.kwargs.timing" if "timing" in kw else "env.task"
    if not lengths:
        if ep["max_steps"] == "auto":
            raise ConfigError(f"episode.max_steps: auto: no trial of {task} ended within {PROBE_STEPS} steps "
                              "at start, so there is no trial length to measure; give a number of steps")
        return
    shortest, longest = min(lengths), max(lengths)
    if shortest < 1:
        raise ConfigError(f"{knob}: with these settings a trial of {task} lasts no step at all: its periods vanish (dt is longer than them)")
    if ep["max_steps"] == "auto":
        if longest > LONGEST_AUTO_TRIAL:
            raise ConfigError(f"{knob}: with these settings a trial of {task} lasts more than {LONGEST_AUTO_TRIAL} "
                              "steps; episode.max_steps: auto refuses such episodes, give a number of steps")
        ep["max_steps"] = ep["trials"] * longest
        try:
            check_episode_sizes(cfg, "episode.max_steps: auto", batching)
        except ConfigError as e:
            raise ConfigError(f"{e}; auto is {ep['trials']} trials x {longest} steps, the longest trial of {task} "
                              "with these settings") from None
        return
    if shortest > ep["max_steps"]:
        raise ConfigError(
            f"{knob}: with these settings a trial of {task} lasts at least {shortest} steps, more than "
            f"episode.max_steps ({ep['max_steps']}): no trial could end inside an episode"
        )
    share = cut_share(lengths, ep["trials"], ep["max_steps"])
    if share > 0:
        k, span = ep["trials"], f"{longest}" if shortest == longest else f"{shortest}-{longest}"
        print(f"warning: episode.max_steps {ep['max_steps']} ends about {share:.0%} of episodes inside a trial, "
              f"where the memory is reset ({k} trials of {task} take up to {k * longest} steps with these "
              f"settings; a trial lasts {span} steps); episode.max_steps: auto makes it {k * longest}", file=sys.stderr)


def cut_share(lengths, trials: int | None, max_steps: int) -> float:
    """The share of episodes that the step cap ends inside a trial, estimated from sampled trial
    lengths taken `trials` at a time (an episode of whole trials ends at a trial's end)."""
    if not trials or len(lengths) < trials or trials * max(lengths) <= max_steps:
        return 0.0
    ends = np.cumsum(np.asarray(lengths[: len(lengths) // trials * trials]).reshape(-1, trials), axis=1)
    cut = (ends[:, -1] > max_steps) & ~(ends == max_steps).any(axis=1)
    return float(cut.mean())


def _make_probe_env(task, task_kwargs):
    from collector.ngym_compat import make_env

    try:
        env = make_env(task, **task_kwargs)
    except ValueError as e:
        raise ConfigError(f"env: {one_line(e)}") from None
    except Exception as e:  # neurogym validates little: a bad kwarg fails anywhere in its constructor
        raise ConfigError(f"env.kwargs: {task} rejects them: {type(e).__name__}: {one_line(e)}") from None
    if not hasattr(env.action_space, "n"):
        raise ConfigError(f"env.task: {task} does not have discrete actions")
    return env


def probe_env(cfg: dict, n_trials: int | None = None) -> dict:
    """The task's shapes and the lengths of sampled trials under the run's settings, from the
    backend's own env: dict(obs_dim, num_actions, trial_steps), n_trials of them (default
    PROBE_TRIALS; fewer on the neurogym backend when they outlast PROBE_STEPS). A trial longer
    than an episode (or than LONGEST_AUTO_TRIAL with max_steps auto) is reported as that + 1
    (the probe stops there)."""
    task, kw, backend = cfg["env"]["task"], cfg["env"]["kwargs"], cfg["env"]["backend"]
    n_trials = n_trials or PROBE_TRIALS
    max_steps = cfg["episode"]["max_steps"]
    cap = (LONGEST_AUTO_TRIAL if max_steps == "auto" else max_steps) + 1
    if backend == "jax":
        env, params = make_jax_env(cfg)

        @jax.jit  # one small program (kept in the compile cache), not dozens of eager operations
        def lengths(params):
            keys = jax.random.split(jax.random.PRNGKey(0), n_trials)
            return jax.vmap(lambda k: env.trial_length(env.reset(k, params)[1]))(keys)

        try:
            steps = [min(int(x), cap) for x in np.asarray(lengths(params))]
        except Exception as e:
            raise ConfigError(f"env.kwargs: {task} fails with them: {type(e).__name__}: {one_line(e)}") from None
        return dict(obs_dim=env.obs_dim, num_actions=env.num_actions, trial_steps=steps, env=env, env_params=params)
    env = _make_probe_env(task, kw)
    steps = []
    try:
        env.unwrapped.seed(0)
        env.reset()
        count, total = 0, 0
        # action 0 (fixate) lets every trial run to its full length
        while len(steps) < n_trials + 1 and total < min(cap * (n_trials + 1), PROBE_STEPS):
            info = env.step(0)[4]
            count, total = count + 1, total + 1
            if info.get("new_trial", False):
                steps.append(count)
                count = 0
            elif count >= cap:  # longer than an episode (or than auto allows): that is all we need
                steps.append(count)
                break
    except Exception as e:
        raise ConfigError(f"env.kwargs: {task} fails with them: {type(e).__name__}: {one_line(e)}") from None
    obs_dim = int(np.prod(env.observation_space.shape))
    # the first trial lost its step 0 to neurogym's reset()
    return dict(obs_dim=obs_dim, num_actions=int(env.action_space.n), trial_steps=[min(x, cap) for x in steps[1:] or steps])


def check_run(cfg: dict, batching: str, n_seeds: int) -> None:
    """Every check a run program gets before any folder is made (also each program of a sweep):
    the task and its timings, the network, the memory of n_seeds runs side by side, and on the
    jax backend that one iteration's rows fit in the buffer."""
    info = probe_env(cfg)
    _mark("probed")
    network = build_network(cfg, info["num_actions"])
    check_network(network, info["obs_dim"])
    check_trials(cfg, info, batching)
    check_resources(cfg, batching, network, info["obs_dim"], info["num_actions"], n_seeds)
    if cfg["env"]["backend"] == "jax":
        collector = JaxCollector(info["env"], info["env_params"], network, episode_spec(cfg), cfg["env"]["num_envs"],
                                 cfg["train"]["steps_per_iter"], stores_state(cfg, batching))
        check_iteration_fits(cfg, collector.max_rows_per_call())
    _mark("checked")


def check_network(network, obs_dim: int) -> None:
    """Build the network once on abstract inputs: a memory setting it cannot be built with (e.g. a
    size of zero) is refused as a config error instead of failing inside the first update."""
    spec = jax.ShapeDtypeStruct  # abstract inputs: nothing is computed, so nothing is compiled
    try:
        jax.eval_shape(network.init, spec((2,), jnp.uint32), spec((1, obs_dim), jnp.float32), spec((1,), jnp.bool_))
    except Exception as e:
        raise ConfigError(f"model.memory_kwargs: the network cannot be built with them: {type(e).__name__}: {one_line(e)}") from None




# ---- command line --------------------------------------------------------------------------


def enable_compile_cache() -> None:
    """Keep compiled XLA programs on disk (JAX_COMPILATION_CACHE_DIR, default
    ~/.cache/mpn-dqn/xla) so that a second run of the same experiment compiles nothing.
    A cache folder that cannot be made is skipped with a warning (the run just compiles)."""
    path = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or Path.home() / ".cache" / "mpn-dqn" / "xla")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        print(f"warning: compile cache {path} unusable ({e.strerror or e}); compiling without it", file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program, however small, goes to the cache (jax's default keeps only those that took
    # a second to compile): loading a small one costs less than compiling it again. The variable
    # sets another threshold in seconds.
    text = os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    try:
        min_secs = float(text)
    except ValueError:
        print(f"warning: JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS={text!r} is not a number; using 0", file=sys.stderr)
        min_secs = 0.0
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)


_COMPILE = "/jax/core/compile/backend_compile_duration"  # one per XLA program: compiled or loaded from the cache
_TRACE = "/jax/core/compile/jaxpr_trace_duration"


def _instrument() -> None:
    """MPN_DQN_TIMING=1: also mark every XLA program (compiled, or loaded from the persistent
    cache: `cache_hit` comes first) and every trace of a jitted function (the driver marks the
    backend's first calls itself: training.train / drive)."""
    from jax import monitoring

    def span(event, start, end, **kw):
        if event in (_COMPILE, _TRACE):
            _mark(f"{'compile' if event == _COMPILE else 'trace'} {end - start:.4f} {kw.get('fun_name', '?')}", end)

    monitoring.register_event_time_span_listener(span)
    monitoring.register_event_listener(lambda event, **kw: _mark("cache_hit") if event.endswith("/cache_hits") else None)


@dataclass
class Session:
    """One invocation's run program: its folders, config, seeds and (on --resume) checkpoint."""

    top: Path
    cfg: dict
    seeds: list
    dirs: list
    runs: list
    resume: dict | None
    lock: RunLock
    run_id: str
    created_top: bool = False  # a new run whose top folder this process made
    new: bool = True


def cli_main(argv: list[str], batching: str, pending: list | None = None) -> int:
    """Command line of tape_dqn.py / segment_dqn.py. Returns the exit status.

    SIGINT/SIGTERM are caught from the first moment (`pending`: signals the script noted while it
    imported): before training starts they stop the setup (and remove the folder a new run made);
    during training the run checkpoints and stops. A main thread stuck in native code is stopped
    by StopFlag's watcher (training.py) in the same way."""
    prog = "tape_dqn.py" if batching == "tape" else "segment_dqn.py"
    stop = StopFlag()
    session = None

    def forced() -> str:  # the watcher's last word when the main thread is stuck (StopFlag)
        if session is None:
            return "nothing was written"
        if session.new and not (session.top / checkpoint.FILENAME).exists():
            _discard(session)
            return "nothing was written"
        return f"the last checkpoint is kept; continue with --resume {session.top}"

    with stop.installed(prog, forced):
        if pending:
            stop.signum = pending[0]
            print(f"{prog}: {signal.Signals(stop.signum).name} before the run started; nothing was written",
                  file=sys.stderr)
            return 128 + stop.signum
        try:
            args = _parser(prog, batching).parse_args(argv)
            enable_compile_cache()
            if _TIMING:
                _instrument()
            if args.resume:
                if args.config or args.set or args.seed is not None or args.out or args.seeds != 1:
                    raise ConfigError("--resume takes no config file, --set, --seed, --seeds or --out: "
                                      "the run's own are used")
                session = _reopen(Path(args.resume), batching)
            else:
                if not args.config:
                    raise ConfigError("give an experiment YAML file (or --resume RUN_DIR)")
                session = _new_run(args, prog, batching)
            if stop.signum is not None:  # during the set-up: _discard removes what a new run made
                raise RunStopped(f"{signal.Signals(stop.signum).name} before training started; nothing was written",
                                 128 + stop.signum)
            print(f"{prog}: writing {session.top}/", file=sys.stderr)
            _mark("train")
            ckpt = Checkpointer(session.top, session.run_id, session.runs)
            summaries = train(session.cfg, batching, session.runs, not args.no_progress, session.seeds, ckpt,
                              session.resume, stop)
        except (ConfigError, RunStopped, OSError) as e:
            with stop.writing:
                _discard(session)
            return report(prog, e)
        finally:
            if session is not None:
                session.lock.release()
    for summary in summaries:
        print(
            f"{prog}: seed {summary['seed']}: final greedy performance {summary['final_eval_performance']:.3f} over "
            f"{summary['final_eval_trials']} trials after {summary['env_steps']} env steps, {summary['wall_s']:.1f} s"
        )
    for d in session.dirs:
        print(f"{prog}: wrote {d}/config.yaml, metrics.csv, summary.json, params.msgpack")
    if stop.signum is not None:
        print(f"{prog}: {signal.Signals(stop.signum).name} after the run had finished: its results above are complete",
              file=sys.stderr)
        return 128 + stop.signum
    return 0


def report(prog: str, e: Exception) -> int:
    """The one stderr line for a refused input (ConfigError), a stopped run (RunStopped) or a
    failed write (OSError); returns the exit status (2, or the run's own)."""
    if isinstance(e, RunStopped):
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2


def _parser(prog: str, batching: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description=f"Double DQN with {batching}-based batching on a NeuroGym task.")
    p.add_argument("config", nargs="?", help="experiment YAML file, e.g. experiments/perceptual_decision_making/tape_mpn.yaml")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--out", help="run folder (default runs/<experiment>-<timestamp>/); must not exist or be empty")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train N independent seeds (seed, seed+1, ...): vmapped in one program on the jax backend; "
                        "one run folder per seed, <out>/seed<k>/")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


MAX_SEEDS = 4096  # seeds in one program; far beyond any machine's memory anyway


def _new_run(args, prog, batching) -> Session:
    """Check everything that can be checked, then make the run folder(s): nothing is written for
    a run that is refused."""
    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load(args.config, overrides)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds {args.seeds}: must lie in [1, {MAX_SEEDS}]")
    seeds = [cfg["seed"] + i for i in range(args.seeds)]
    if seeds[-1] >= 2**32:
        raise ConfigError(f"--seed {cfg['seed']}: seeds must stay below 2**32")
    _mark("config")
    check_run(cfg, batching, len(seeds))
    top = Path(args.out) if args.out else Path("runs") / f"{cfg['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    RunFolder.check(top)
    created_top = not top.exists()
    make_folder(top, "--out")
    lock = RunLock(top)
    session = Session(top=top, cfg=cfg, seeds=seeds, dirs=[], runs=[], resume=None, lock=lock,
                      run_id=uuid.uuid4().hex, created_top=created_top)
    identity = dict(run_id=session.run_id, program=prog, batching=batching, backend=cfg["env"]["backend"], seeds=seeds)
    try:
        if len(seeds) > 1:  # the program's own; with one seed the run folder's run.json is the top one
            atomic_write(top / RUN_FILE, json.dumps(identity, indent=2).encode())
        session.dirs = [top] if len(seeds) == 1 else [top / f"seed{s}" for s in seeds]
        for d, s in zip(session.dirs, seeds):
            session.runs.append(RunFolder(d, {**cfg, "seed": s}, identity=dict(identity, seed=s)))
    except (ConfigError, OSError):
        _discard(session)
        session.lock.release()
        raise
    return session


def _discard(session: Session | None) -> None:
    """Remove what a new run wrote before its first checkpoint, so that a refused or interrupted
    start leaves no half-made folder behind (the folder can then be reused with --out). A run
    with a checkpoint, or a resumed one, is never touched."""
    if session is None or not session.new or (session.top / checkpoint.FILENAME).exists():
        return
    for d in session.dirs:
        for name in ("config.yaml", "metrics.csv", RUN_FILE):
            (d / name).unlink(missing_ok=True)
        if d != session.top:
            with contextlib.suppress(OSError):
                d.rmdir()
    for name in (RUN_FILE, LOCK_FILE):
        (session.top / name).unlink(missing_ok=True)
    if session.created_top:
        with contextlib.suppress(OSError):
            session.top.rmdir()


def _read_run_file(top: Path) -> dict:
    try:
        info = json.loads((top / RUN_FILE).read_text())
        if not (isinstance(info, dict) and isinstance(info.get("run_id"), str) and isinstance(info.get("seeds"), list)
                and all(isinstance(x, int) for x in info["seeds"]) and info["seeds"]):
            raise ValueError("fields missing")
        return info
    except FileNotFoundError:
        raise ConfigError(f"--resume {top}: no {checkpoint.FILENAME} there (not a run folder of this program: no {RUN_FILE})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume {top}: {RUN_FILE} is damaged ({one_line(e)})") from None


def _reopen(top: Path, batching: str) -> Session:
    """Validate an interrupted run folder and reopen it: same run (run id), same program, not
    finished, every seed's files in place. A folder killed before its first checkpoint, with no
    metrics row yet, starts again from its saved config."""
    if not top.is_dir():
        raise ConfigError(f"--resume {top}: no such run folder")
    info = _read_run_file(top)
    if info.get("batching", batching) != batching:
        raise ConfigError(f"--resume {top}: a {info['batching']} run; resume it with {info['batching']}_dqn.py")
    seeds = info["seeds"]
    dirs = [top] if len(seeds) == 1 else [top / f"seed{s}" for s in seeds]
    lock = RunLock(top)
    try:
        return _reopen_locked(top, batching, info, seeds, dirs, lock)
    except BaseException:
        lock.release()
        raise


def _reopen_locked(top, batching, info, seeds, dirs, lock) -> Session:
    def seed_files(ds):
        for d in ds:
            if not d.is_dir():
                raise ConfigError(f"--resume {top}: {d.name}/ is missing; this run cannot be continued")
            for name in ("config.yaml", "metrics.csv"):
                if not (d / name).is_file():
                    raise ConfigError(f"--resume {top}: {d.relative_to(top.parent)}/{name} is missing; this run cannot be continued")
            if (d / "summary.json").exists():
                raise ConfigError(f"--resume {top}: {d.name} already finished (summary.json is there); nothing to continue")

    try:
        ck = checkpoint.load(top)
    except FileNotFoundError:
        ck = None
    except OSError as e:
        raise ConfigError(f"--resume {top}: cannot read {checkpoint.FILENAME}: {e.strerror or e}") from None
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"--resume {top}: {e}") from None
    if ck is None:  # killed during set-up: nothing trained yet, start again from the saved config
        seed_files(dirs)
        for d in dirs:
            if len((d / "metrics.csv").read_bytes().splitlines()) > 1:
                raise ConfigError(f"--resume {top}: no {checkpoint.FILENAME} there but metrics.csv has rows; this run cannot be continued")
        cfg = load(dirs[0] / "config.yaml")
        check_resolved(cfg, f"--resume {top}: config.yaml")
        cfg["seed"] = seeds[0]
        runs = [RunFolder.reopen(d, 0) for d in dirs]
        return Session(top=top, cfg=cfg, seeds=seeds, dirs=dirs, runs=runs, resume=None, lock=lock,
                       run_id=info["run_id"], new=False)
    if ck["run_id"] != info["run_id"]:
        raise ConfigError(f"--resume {top}: {checkpoint.FILENAME} belongs to another run (run id {ck['run_id'][:8]}…, "
                          f"this folder's is {info['run_id'][:8]}…)")
    if ck["batching"] != batching:
        raise ConfigError(f"--resume {top}: a {ck['batching']} run; resume it with {ck['batching']}_dqn.py")
    if ck["finished"]:
        raise ConfigError(f"--resume {top}: the run already finished")
    if ck["seeds"] != seeds:
        raise ConfigError(f"--resume {top}: {checkpoint.FILENAME} and {RUN_FILE} disagree on the seeds")
    cfg = config_from_checkpoint(ck["config"], top)
    groups = seed_groups(cfg, seeds)
    g = ck.get("group")
    if not isinstance(g, int) or not 0 <= g < len(groups):
        raise ConfigError(f"--resume {top}: damaged checkpoint (group)")
    first = sum(len(x) for x in groups[:g])  # the seeds before the group being trained have finished
    mine = len(groups[g])
    seed_files(dirs[first:])
    rows, fresh = ck["rows"], bool(ck.get("fresh"))
    last = [t.get("last") if isinstance(t, dict) else None for t in ck.get("trackers", [])] or [None] * mine
    runs = [None] * len(seeds)
    try:
        for i in range(first, len(seeds)):
            j = i - first
            if j < mine and not fresh:
                runs[i] = RunFolder.reopen(dirs[i], int(rows[j]), last[j])
            else:  # a group that has not started yet
                runs[i] = RunFolder.reopen(dirs[i], 0)
    except (IndexError, TypeError, ValueError):
        raise ConfigError(f"--resume {top}: damaged checkpoint (rows)") from None
    return Session(top=top, cfg=cfg, seeds=seeds, dirs=dirs[first:], runs=runs, resume=ck, lock=lock,
                   run_id=info["run_id"], new=False)


def config_from_checkpoint(raw, top: Path) -> dict:
    """The checkpoint's resolved config, validated like a file."""
    from config import from_mapping

    return from_mapping(raw, f"--resume {top}: {checkpoint.FILENAME}")
