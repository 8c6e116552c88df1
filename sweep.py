"""Sweeps: seeds x settings in one program, sharded over the local devices, split over hosts.

    python -m sweep experiments/<task>/tape_mpn.yaml --grid train.lr=1e-3,2e-3,4e-3 \\
        --grid model.memory_kwargs.eta_init=0.1,0.5 --seeds 5 [--out DIR] [--batching segment] [--set K=V]
    python -m sweep SWEEP.yaml [--out DIR]     # the same from a sweep file (below)
    python -m sweep --resume DIR               # continue an interrupted sweep

A sweep file:

    config: experiments/perceptual_decision_making/tape_mpn.yaml
    batching: tape            # or segment (default: tape)
    seeds: 5
    set: {train.total_env_steps: 50000}    # overrides for every run (optional)
    grid:
      train.lr: [0.001, 0.002, 0.004]
      model.memory_kwargs.eta_init: [0.1, 0.5]

Settings whose keys are values inside the program (`learner.VALUE_KEYS`: learning rates, γ, the
ε schedule, Huber δ, Polyak rate, initial η and λ) run together with the seeds in ONE program,
vmapped over (setting, seed); any other key (hidden size, tape size, memory model, task, ...)
makes separate programs, each compiled once. The run axis of a program is sharded over all local
devices (a `Mesh` and `NamedSharding`). With `jax.distributed` (flags below, or the environment
of a SLURM job, which jax detects itself) every process takes its share of each program's runs.

Output, DIR (default runs/sweep-<config>-<timestamp>/): sweep.json (the plan), one ordinary run
folder per (setting, seed), `DIR/<setting>/seed<k>/`, readable by every plotting command, and one
checkpoint per program and process under `DIR/programs/`. `python -m plotting.sweep DIR` writes
the sweep table and plot.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path

import yaml

from config import ConfigError, load, one_line, safe_load, short
from oneline import OneLineParser

PROG = "python -m sweep"
PLAN = "sweep.json"
FORMAT = 1
MAX_RUNS = 4096
FIXED = {"seed": "use --seeds", "name": "a sweep names its runs itself", "env.backend": "a sweep runs on the jax backend"}


# ---- the plan ------------------------------------------------------------------------------


def _values(text: str, where: str) -> list:
    """'a,b,c' as YAML scalars."""
    out = []
    for item in text.split(","):
        try:
            out.append(safe_load(item))
        except yaml.YAMLError:
            raise ConfigError(f"{where}: {item!r} is not a valid value") from None
    return out


def parse_grid(items: list[str]) -> dict:
    """--grid KEY=V1,V2 ... as {key: [values]} (order kept)."""
    grid: dict = {}
    for item in items:
        where = f"--grid {short(item, 80)}"
        if "=" not in item:
            raise ConfigError(f"{where}: expected KEY=V1,V2,...")
        key, text = (x.strip() for x in item.split("=", 1))
        if key in grid:
            raise ConfigError(f"{where}: {key} is given twice")
        grid[key] = _values(text, where)
    return grid


def _get(cfg: dict, dotted: str):
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def _label(setting: dict) -> str:
    """A folder name for a setting, e.g. 'lr=0.001,eta_init=0.1' (the last part of each key,
    the whole key where two keys share it)."""
    if not setting:
        return "default"
    lasts = [k.split(".")[-1] for k in setting]
    parts = []
    for k, v in setting.items():
        name = k.split(".")[-1] if lasts.count(k.split(".")[-1]) == 1 else k
        parts.append(f"{name}={v}")
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", ",".join(parts))


MAX_LABEL = 200  # characters of a setting's folder name (file systems take 255 bytes)


def make_plan(config_path: str, grid: dict, seeds: int, batching: str, sets: list[str]) -> dict:
    """Validate every setting like the entry points do (one ConfigError line) and group the runs
    into programs: one per combination of the keys that change shapes or code."""
    from learner import VALUE_KEYS

    if batching not in ("tape", "segment"):
        raise ConfigError(f"--batching {batching}: expected tape or segment")
    if not 1 <= seeds <= MAX_RUNS:
        raise ConfigError(f"--seeds {seeds}: must lie in [1, {MAX_RUNS}]")
    base = load(config_path, sets)
    if base["seed"] + seeds - 1 > 2**32 - 1:
        raise ConfigError(f"--seeds {seeds}: seeds {base['seed']} to {base['seed'] + seeds - 1} pass 2**32 - 1 "
                          "(a seed is a 32-bit unsigned integer)")
    if base["env"]["backend"] != "jax":
        raise ConfigError(f"{config_path}: env.backend: a sweep runs on the jax backend (this config says {base['env']['backend']})")
    for key, values in grid.items():
        if key in FIXED:
            raise ConfigError(f"--grid {key}: cannot vary in a sweep ({FIXED[key]})")
        if not values:
            raise ConfigError(f"--grid {key}: no values")
    resolved = {}
    for key, values in grid.items():  # each value alone, so the message names the one that is wrong;
        # kept as the config reads it (YAML reads 1e-3 as a string, the config as a number)
        resolved[key] = []
        for v in values:
            try:
                resolved[key].append(_get(load(config_path, [*sets, f"{key}={json.dumps(v)}"]), key))
            except ConfigError as e:
                raise ConfigError(str(e).replace("--set:", f"--grid {key}={short(v, 40)}:", 1)) from None
    grid = resolved
    # a key is a value of the program only if every value is a number (None or a string picks a code path)
    value_keys = [k for k, vs in grid.items() if k in VALUE_KEYS
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)]
    shape_keys = [k for k in grid if k not in value_keys]
    n_runs = seeds * math.prod(len(v) for v in grid.values())
    if n_runs > MAX_RUNS:
        raise ConfigError(f"--grid: {n_runs} runs, more than {MAX_RUNS}")
    programs = []
    for shape in itertools.product(*(grid[k] for k in shape_keys)):
        shape_set = dict(zip(shape_keys, shape))
        runs = []
        cfg_p = None
        for values in itertools.product(*(grid[k] for k in value_keys)):
            setting = {**shape_set, **dict(zip(value_keys, values))}
            overrides = [*sets, *(f"{k}={json.dumps(v)}" for k, v in setting.items())]
            cfg = load(config_path, overrides)
            if cfg_p is None:
                cfg_p = cfg
            label = _label(setting)
            if len(label) > MAX_LABEL or label in (".", ".."):
                raise ConfigError(f"--grid: the setting {short(label, 60)} makes a folder name of {len(label)} "
                                  f"characters (at most {MAX_LABEL}); give shorter values")
            for s in range(cfg["seed"], cfg["seed"] + seeds):
                runs.append(dict(setting=setting, seed=s, dir=f"{label}/seed{s}",
                                 hp={k: _get(cfg, k) for k in value_keys}, config={**cfg, "seed": s}))
        # the id is a digest of the program, so that every process of a multi-host sweep, which
        # makes the plan itself, names it alike
        digest = hashlib.sha256(json.dumps([config_path, batching, sets, shape_set, runs], sort_keys=True,
                                           default=str).encode()).hexdigest()[:32]
        programs.append(dict(id=f"p{len(programs)}", shape=shape_set, value_keys=value_keys, config=cfg_p,
                             runs=runs, run_id=digest))
    dirs = [r["dir"] for p in programs for r in p["runs"]]
    if len(set(dirs)) != len(dirs):
        raise ConfigError("--grid: two settings get the same folder name; give values that differ in writing")
    return dict(format=FORMAT, config=str(config_path), batching=batching, seeds=seeds, grid=grid, set=list(sets),
                programs=programs)


def read_sweep_file(path: str) -> dict:
    """A sweep YAML file as dict(config, batching, seeds, grid, set), checked key by key."""
    where = str(path)
    try:
        raw = safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{where}: cannot read it as YAML: {one_line(e)}") from None
    if not isinstance(raw, dict) or "config" not in raw:
        raise ConfigError(f"{where}: a sweep file is a mapping with at least 'config' and 'grid'")
    allowed = {"config", "batching", "seeds", "grid", "set", "out"}
    bad = sorted(set(raw) - allowed)
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, bad))}; allowed: {', '.join(sorted(allowed))}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ConfigError(f"{where}: grid: expected a mapping of key: [values]")
    sets = raw.get("set") or {}
    if not isinstance(sets, dict):
        raise ConfigError(f"{where}: set: expected a mapping of key: value")
    seeds = raw.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool):
        raise ConfigError(f"{where}: seeds: expected an integer")
    config_path = Path(str(raw["config"]))
    if not config_path.is_absolute() and not config_path.exists():
        config_path = Path(path).parent / config_path
    return dict(config=str(config_path), batching=raw.get("batching", "tape"), seeds=seeds, grid=grid,
                set=[f"{k}={json.dumps(v)}" for k, v in sets.items()], out=raw.get("out"))


# ---- running -------------------------------------------------------------------------------


def share(runs: list, process: int, processes: int) -> list:
    """The runs of a program that `process` of `processes` trains: every processes-th one."""
    return runs[process::processes]


def run_program(top: Path, program: dict, batching: str, process: int, processes: int, stop, progress: bool,
                resume: bool) -> int:
    """Train this process's share of one program (resuming from its checkpoint when there is one).
    Returns the number of runs trained now (0 when all had finished)."""
    import checkpoint
    from backends import JaxBackend
    from runs import RunFolder
    from training import Checkpointer, drive

    mine = share(program["runs"], process, processes)
    if not mine:
        return 0
    folder = top / "programs" / program["id"] / f"process{process}"
    folder.mkdir(parents=True, exist_ok=True)
    dirs = [top / r["dir"] for r in mine]
    if all((d / "summary.json").is_file() for d in dirs):
        return 0
    ck = None
    if resume:
        try:
            ck = checkpoint.load(folder)
        except FileNotFoundError:
            ck = None
        except checkpoint.CheckpointError as e:
            raise ConfigError(f"--resume {top}: {e}") from None
        if ck is not None and (ck["run_id"] != program["run_id"] or ck["finished"]):
            raise ConfigError(f"--resume {top}: {folder / checkpoint.FILENAME} does not belong to this sweep's program {program['id']}")
    identity = lambda r: dict(run_id=program["run_id"], program=PROG, batching=batching, backend="jax",
                              seed=r["seed"], seeds=[x["seed"] for x in mine], sweep=program["id"], setting=r["setting"])
    if ck is None:  # a fresh start: folders made by an attempt that never checkpointed are made again
        for d in dirs:
            for name in ("run.json", "config.yaml", "metrics.csv"):
                (d / name).unlink(missing_ok=True)
        folders = [RunFolder(d, r["config"], identity=identity(r)) for d, r in zip(dirs, mine)]
    else:
        last = [t.get("last") for t in ck["trackers"]]
        folders = [RunFolder.reopen(d, int(n), l) for d, n, l in zip(dirs, ck["rows"], last)]
    backend = JaxBackend(program["config"], batching, [r["seed"] for r in mine], [r["hp"] for r in mine],
                         state_dir=folder / "state")
    ckpt = Checkpointer(folder, program["run_id"], folders, resume_at=top)
    drive(backend, program["config"], batching, folders, [r["seed"] for r in mine], 0, 1, ckpt, ck, stop, progress,
          run_cfgs=[r["config"] for r in mine])
    return len(mine)


def check_plan(plan, where: str) -> None:
    """A sweep.json read back for --resume: the structure this module writes, every run's config
    valid as a resolved config, every run folder inside the sweep folder. One ConfigError line."""
    from config import from_mapping

    def need(ok, what):
        if not ok:
            raise ConfigError(f"{where} is damaged: {what}")

    need(isinstance(plan, dict) and plan.get("format") == FORMAT, f"not a format-{FORMAT} sweep plan")
    need(plan.get("batching") in ("tape", "segment"), "batching")
    programs = plan.get("programs")
    need(isinstance(programs, list) and programs, "programs")
    for i, p in enumerate(programs):
        at = f"programs[{i}]"
        need(isinstance(p, dict) and isinstance(p.get("id"), str) and p["id"].isidentifier(), f"{at}.id")
        need(isinstance(p.get("run_id"), str) and isinstance(p.get("value_keys"), list), f"{at}.run_id, value_keys")
        need(isinstance(p.get("runs"), list) and p["runs"], f"{at}.runs")
        p["config"] = from_mapping(p.get("config"), f"{where}: {at}.config")
        for j, r in enumerate(p["runs"]):
            rat = f"{at}.runs[{j}]"
            need(isinstance(r, dict), rat)
            seed, d, hp = r.get("seed"), r.get("dir"), r.get("hp")
            need(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32, f"{rat}.seed")
            parts = Path(d).parts if isinstance(d, str) else ()
            need(parts and not Path(d).is_absolute() and ".." not in parts, f"{rat}.dir (a folder inside the sweep)")
            need(isinstance(hp, dict) and set(hp) <= set(p["value_keys"]) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in hp.values()),
                f"{rat}.hp")
            need(isinstance(r.get("setting"), dict), f"{rat}.setting")
            r["config"] = from_mapping(r.get("config"), f"{where}: {rat}.config")


def check_programs(plan: dict) -> None:
    """The entry points' checks (cli.check_run), per program, before any folder is made; an
    episode.max_steps of auto is then the measured number in every run's config too."""
    from cli import check_run

    for p in plan["programs"]:
        check_run(p["config"], plan["batching"], len(p["runs"]))
        for r in p["runs"]:  # the value keys never change the task or the episode rule
            r["config"]["episode"] = dict(r["config"]["episode"], max_steps=p["config"]["episode"]["max_steps"])


def _distributed(args) -> tuple[int, int]:
    """Join a multi-process run when asked (flags or a SLURM job); returns (process, processes)."""
    import jax

    if args.coordinator or args.num_processes or args.slurm:
        kwargs = {}
        if args.coordinator:
            kwargs.update(coordinator_address=args.coordinator, num_processes=args.num_processes,
                          process_id=args.process_id)
        try:
            jax.distributed.initialize(**kwargs)
        except Exception as e:  # a wrong address or count fails in many ways
            raise ConfigError(f"--coordinator: cannot join the distributed run: {one_line(e)}") from None
    from jaxenv import start_backend

    start_backend(PROG)  # JAX_PLATFORMS naming a platform this machine lacks: one line
    return jax.process_index(), jax.process_count()


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Seeds x settings of one experiment in one program per shape.")
    p.add_argument("config", nargs="?", help="experiment YAML file, or a sweep file (with 'config' and 'grid')")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", help="values of one config key (repeatable)")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds per setting (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run (repeatable)")
    p.add_argument("--batching", default=None, choices=("tape", "segment"), help="default tape")
    p.add_argument("--out", help="sweep folder (must not exist or be empty)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in DIR")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("several hosts (jax.distributed)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int, help="processes in the run")
    g.add_argument("--process-id", type=int, help="this process's index")
    g.add_argument("--slurm", action="store_true", help="take them from the SLURM job's environment")
    return p


def main(argv=None) -> int:
    from runs import RunFolder, RunLock, RunStopped, atomic_write, make_folder
    from training import StopFlag

    stop = StopFlag()
    top, lock = None, None

    def forced() -> str:  # the watcher's last word when the main thread is stuck (StopFlag)
        if top is None or not (top / PLAN).is_file():
            return "nothing was written"
        return f"what was written is kept; continue with --resume {top}"

    with stop.installed(PROG, forced):
        try:
            args = _parser().parse_args(argv)
            process, processes = _distributed(args)
            if args.resume:
                if args.config or args.grid or args.set or args.seeds or args.out or args.batching:
                    raise ConfigError("--resume takes no config, --grid, --set, --seeds, --batching or --out")
                top = Path(args.resume)
                try:
                    plan = json.loads((top / PLAN).read_text())
                except FileNotFoundError:
                    raise ConfigError(f"--resume {top}: no {PLAN} there (not a sweep folder)") from None
                except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
                    raise ConfigError(f"--resume {top}: {PLAN} is damaged ({one_line(e)})") from None
                check_plan(plan, f"--resume {top}: {PLAN}")
                lock = RunLock(top, f".lock.process{process}")
            else:
                if not args.config:
                    raise ConfigError("give an experiment YAML file or a sweep file (or --resume DIR)")
                spec = dict(config=args.config, batching="tape", seeds=1, grid={}, set=[], out=None)
                if _is_sweep_file(args.config):
                    spec = read_sweep_file(args.config)
                flags = parse_grid(args.grid)
                twice = sorted(set(spec["grid"]) & set(flags))
                if twice:
                    raise ConfigError(f"--grid {twice[0]}: given in the sweep file {args.config} too; give it once")
                grid = {**spec["grid"], **flags}
                seeds = spec["seeds"] if args.seeds is None else args.seeds
                plan = make_plan(spec["config"], grid, seeds, args.batching or spec["batching"],
                                 [*spec["set"], *args.set])
                check_programs(plan)
                name = Path(spec["config"]).stem
                if processes > 1 and not (args.out or spec["out"]):
                    raise ConfigError("--out: give the sweep folder to every process of a multi-process sweep")
                top = Path(args.out or spec["out"] or Path("runs") / f"sweep-{name}-{datetime.now():%Y%m%d-%H%M%S}")
                if process == 0:
                    RunFolder.check(top)
                    make_folder(top, "--out")
                    lock = RunLock(top, f".lock.process{process}")
                    atomic_write(top / PLAN, json.dumps(plan, indent=1).encode())
                else:  # the others write into the folder only once process 0 has checked and claimed it
                    _wait_for(top / PLAN, plan)
                    lock = RunLock(top, f".lock.process{process}")
            n_runs = sum(len(p["runs"]) for p in plan["programs"])
            print(f"{PROG}: {n_runs} runs in {len(plan['programs'])} program(s), writing {top}/"
                  + (f" (process {process} of {processes})" if processes > 1 else ""), file=sys.stderr)
            trained = 0
            for program in plan["programs"]:
                trained += run_program(top, program, plan["batching"], process, processes, stop, not args.no_progress,
                                       resume=bool(args.resume))
        except (ConfigError, RunStopped, OSError) as e:
            from cli import report

            return report(PROG, e)
        finally:
            if lock is not None:
                lock.release()
    done = sum((top / r["dir"] / "summary.json").is_file() for p in plan["programs"] for r in p["runs"])
    print(f"{PROG}: {trained} run(s) trained by this process; {done} of {n_runs} finished in {top}/; "
          f"table and plot: python -m plotting.sweep {top}")
    return 0


def _wait_for(path: Path, plan: dict, timeout: float = 600.0) -> None:
    """Wait until process 0 has written the plan, and check it is this one."""
    import time

    t0 = time.monotonic()
    if not path.is_file():
        print(f"{PROG}: waiting for process 0 to write {path} (at most {timeout:.0f} s)", file=sys.stderr, flush=True)
    while not path.is_file():
        if time.monotonic() - t0 > timeout:
            raise ConfigError(f"--out {path.parent}: process 0 did not write {PLAN} within {timeout:.0f} s")
        time.sleep(0.2)
    time.sleep(0.2)  # written atomically; a moment for a slow shared file system
    try:
        theirs = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"--out {path.parent}: cannot read process 0's {PLAN}") from None
    if [p["run_id"] for p in theirs.get("programs", [])] != [p["run_id"] for p in plan["programs"]]:
        raise ConfigError(f"--out {path.parent}: process 0 planned another sweep (different arguments?)")


def _is_sweep_file(path: str) -> bool:
    """A sweep file has a top-level 'grid' or 'config' key; an experiment file has neither."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except Exception:
        return False  # load() reports what is wrong with it
    return isinstance(raw, dict) and ("grid" in raw or "config" in raw)


if __name__ == "__main__":
    from jaxenv import import_jax

    import_jax(PROG, start=False)  # JAX's environment variables; the backend after jax.distributed
    sys.exit(main())
