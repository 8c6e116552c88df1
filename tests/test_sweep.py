"""python -m sweep: settings x seeds in one program, checked against the entry point's own runs,
sharded over 4 (forced) CPU devices, interrupted and resumed, and refusing bad grids in one line."""
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sweep
from cli import cli_main
from training import StopFlag

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
env: {task: PerceptualDecisionMaking-v0, num_envs: 4}
episode: {trials: 2, max_steps: 60}
model: {memory: mpn, memory_kwargs: {hidden: 8, input_proj: 4, input_bias: true}, head: [8]}
train: {total_env_steps: 768, steps_per_iter: 16, learning_starts: 128, buffer_capacity: 2048, lr_end: null}
tape: {size: 128}
eval: {every_env_steps: 256, trials: 10, final_trials: 10, num_envs: 4}
"""
GRID = ["--grid", "train.lr=0.001,0.004", "--grid", "train.gamma=0.8"]


def rows(d: Path) -> list:
    """metrics.csv without wall_s."""
    lines = (d / "metrics.csv").read_text().splitlines()
    wall = lines[0].split(",").index("wall_s")
    return [[c for i, c in enumerate(line.split(",")) if i != wall] for line in lines]


def assert_same_run(a: Path, b: Path, exact: bool = False) -> None:
    """The same metrics rows and parameters: byte for byte when the two programs trained the same
    number of runs side by side; otherwise to float32 rounding, since XLA's CPU kernels sum in
    an order that depends on the vmapped batch size (the parameters then differ by ~1e-8)."""
    from flax import serialization

    assert rows(a) == rows(b), (a, b)
    pa, pb = ((d / "params.msgpack").read_bytes() for d in (a, b))
    if exact:
        assert hashlib.sha256(pa).digest() == hashlib.sha256(pb).digest(), (a, b)
        return
    import jax

    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 serialization.msgpack_restore(pa), serialization.msgpack_restore(pb))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(experiment, tmp_path_factory):
    """A 2-setting x 2-seed sweep in one program (this process: one CPU device)."""
    out = tmp_path_factory.mktemp("sweep") / "ref"
    assert sweep.main([str(experiment), *GRID, "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    return out


def test_one_program_of_runs_equals_the_entry_points_runs(experiment, reference, tmp_path):
    plan = json.loads((reference / "sweep.json").read_text())
    assert len(plan["programs"]) == 1 and len(plan["programs"][0]["runs"]) == 4
    assert plan["programs"][0]["value_keys"] == ["train.lr", "train.gamma"]
    out = tmp_path / "single"
    assert cli_main([str(experiment), "--set", "train.lr=0.004", "--set", "train.gamma=0.8", "--seeds", "2",
                     "--out", str(out), "--no-progress"], "tape") == 0
    for seed in (0, 1):  # 4 runs side by side against 2
        assert_same_run(reference / f"lr=0.004,gamma=0.8/seed{seed}", out / f"seed{seed}")
    run = json.loads((reference / "lr=0.001,gamma=0.8/seed1/run.json").read_text())
    assert run["batching"] == "tape" and run["setting"] == {"train.lr": 0.001, "train.gamma": 0.8}


FOUR = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")


@pytest.fixture(scope="module")
def sharded(experiment, tmp_path_factory):
    """The reference sweep on 4 (forced) CPU devices, one run per device."""
    out = tmp_path_factory.mktemp("sweep") / "sharded"
    proc = subprocess.run([sys.executable, "-m", "sweep", str(experiment), *GRID, "--seeds", "2", "--out", str(out),
                           "--no-progress"], cwd=ROOT, env=FOUR, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_sharded_over_four_devices_equals_one_device(reference, sharded):
    for d in sorted(p.relative_to(reference) for p in reference.glob("*/seed*")):  # 1 run per device against 4
        assert_same_run(sharded / d, reference / d)


INTERRUPT = """
import signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import sweep, training
sys.path.insert(0, {tests!r})
from test_sweep import StopAfterFirstRow
training.StopFlag = lambda: StopAfterFirstRow(Path({out!r}))
sys.exit(sweep.main({argv!r}))
"""


def test_a_sharded_sweep_resumes_from_its_orbax_checkpoint(experiment, sharded, tmp_path):
    out = tmp_path / "sharded_resumed"
    argv = [str(experiment), *GRID, "--seeds", "2", "--out", str(out), "--no-progress"]
    code = INTERRUPT.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(out), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=FOUR, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr[-2000:]
    state = out / "programs" / "p0" / "process0" / "state"
    assert sorted(p.name for p in state.iterdir() if p.name.isdigit()), "orbax wrote no step"
    proc = subprocess.run([sys.executable, "-m", "sweep", "--resume", str(out), "--no-progress"], cwd=ROOT, env=FOUR,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for d in sorted(p.relative_to(sharded) for p in sharded.glob("*/seed*")):
        assert_same_run(out / d, sharded / d, exact=True)


class StopAfterFirstRow(StopFlag):
    """A stop flag that reads SIGINT once the program has a checkpoint and a metrics row."""

    def __init__(self, top: Path):
        super().__init__()
        self.top = top

    def __call__(self, signum, frame):  # installed as the signal handler
        pass

    @property
    def signum(self):
        rows = [len(p.read_text().splitlines()) for p in self.top.glob("*/seed*/metrics.csv")]
        return signal.SIGINT if rows and min(rows) >= 2 else None

    @signum.setter
    def signum(self, value):  # what the real handler would note; this flag reads the folder
        pass


def test_table_and_plot(reference, tmp_path):
    from plotting.sweep import main

    assert main([str(reference), "--out", str(tmp_path / "s.png"), "--table", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| train.lr | train.gamma |" in text and "| 0.004 | 0.8 | 2/2 |" in text
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize("flags, needle", [
    (["--grid", "seed=1,2"], "--grid seed: cannot vary"),
    (["--grid", "train.lrr=0.1"], "unknown key 'train.lrr'"),
    (["--grid", "train.lr=fast"], "train.lr"),
    (["--grid", "train.gamma=0.5,1.5"], "--grid train.gamma=1.5"),
    (["--grid", "env.backend=neurogym"], "cannot vary"),
    (["--grid", "train.lr"], "expected KEY=V1,V2"),
    (["--grid", "train.lr=0.1", "--grid", "train.lr=0.2"], "given twice"),
    (["--seeds", "0"], "--seeds 0"),
    (["--set", "seed=4294967295", "--seeds", "2"], "pass 2**32 - 1"),
    (["--grid", "env.kwargs.foo=" + "x" * 300], "makes a folder name of"),
])
def test_bad_grids_are_one_line_and_write_nothing(experiment, tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert sweep.main([str(experiment), *flags, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_sweep_file_gives_the_same_plan_as_flags(experiment, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(f"config: {experiment}\nseeds: 2\ngrid:\n  train.lr: [0.001, 0.004]\n  train.gamma: [0.8]\n")
    spec = sweep.read_sweep_file(str(f))
    a = sweep.make_plan(spec["config"], spec["grid"], spec["seeds"], spec["batching"], spec["set"])
    b = sweep.make_plan(str(experiment), sweep.parse_grid(GRID[1::2]), 2, "tape", [])
    assert a == b


def test_two_processes_on_localhost_give_the_same_runs(experiment, reference, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two"
    procs = [subprocess.Popen([sys.executable, "-m", "sweep", str(experiment), *GRID, "--seeds", "2", "--out", str(out),
                               "--no-progress", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                               "--process-id", str(i)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    assert sorted(p.name for p in (out / "programs" / "p0").iterdir()) == ["process0", "process1"]
    for d in sorted(p.relative_to(reference) for p in reference.glob("*/seed*")):  # 2 runs per process against 4
        assert_same_run(out / d, reference / d)


def test_a_grid_key_in_the_sweep_file_and_in_grid_is_refused(experiment, tmp_path, capsys):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"config: {experiment}\ngrid:\n  train.lr: [0.001, 0.002]\n")
    assert sweep.main([str(spec), "--grid", "train.lr=0.003", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--grid train.lr: given in the sweep file" in err, err
    spec.write_text(f"config: {experiment}\ngrid:\n  train.lr: [0.001]\n  train.lr: [0.002]\n")
    assert sweep.main([str(spec), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'train.lr' is given twice" in err, err
    assert not (tmp_path / "s").exists()


HOLD = """
import sys, threading
from pathlib import Path
sys.path.insert(0, {root!r})
import sweep, training

class Hold(training.StopFlag):
    @property
    def signum(self):  # read between blocks: once there is a checkpoint and a row, hold for ever
        top = Path({out!r})
        rows = [len(p.read_text().splitlines()) for p in top.glob("*/seed*/metrics.csv")]
        if rows and min(rows) >= 2 and (top / "programs/p0/process0/checkpoint.pkl").is_file():
            print("held", flush=True)
            threading.Event().wait()
        return None

    @signum.setter
    def signum(self, value):
        pass

training.StopFlag = Hold
sys.exit(sweep.main({argv!r}))
"""


def test_one_process_per_sweep_folder_and_kill_9_then_resume_is_exact(experiment, reference, tmp_path):
    """While a sweep runs, a --resume of its folder is refused (it once appended rows twice); after
    kill -9 one --resume finishes it, equal byte for byte to the uninterrupted sweep."""
    out = tmp_path / "held"
    argv = [str(experiment), *GRID, "--seeds", "2", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), out=str(out), argv=argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()[-2000:]
    second = subprocess.run([sys.executable, "-m", "sweep", "--resume", str(out), "--no-progress"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "another process" in second.stderr, second.stderr[-2000:]
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    proc.kill()
    proc.communicate()
    again = subprocess.run([sys.executable, "-m", "sweep", "--resume", str(out), "--no-progress"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    for d in sorted(p.relative_to(reference) for p in reference.glob("*/seed*")):
        assert_same_run(out / d, reference / d, exact=True)


def edited_copy(reference: Path, tmp_path: Path, edit) -> Path:
    """A copy of the reference sweep folder whose sweep.json went through edit(plan)."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    plan = json.loads((out / "sweep.json").read_text())
    edit(plan)
    (out / "sweep.json").write_text(json.dumps(plan))
    return out


@pytest.mark.parametrize("edit, needle", [
    (lambda plan: plan["programs"][0].pop("runs"), "programs[0].runs"),
    (lambda plan: plan["programs"][0]["config"]["model"]["memory_kwargs"].update(hidden=0), "hidden"),
    (lambda plan: plan["programs"][0]["runs"][0]["config"]["train"].update(lr="fast"), "train.lr"),
    (lambda plan: plan["programs"][0]["runs"][0].update(dir="../../elsewhere"), "runs[0].dir"),
    (lambda plan: plan["programs"][0]["runs"][1].update(seed=-1), "runs[1].seed"),
    (lambda plan: plan.update(format=99), "format"),
])
def test_a_damaged_sweep_plan_is_refused_on_resume_in_one_line(reference, tmp_path, capsys, edit, needle):
    out = edited_copy(reference, tmp_path, edit)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert sweep.main(["--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sweep.json" in err and needle in err and "Traceback" not in err, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


@pytest.mark.parametrize("edit, extra, needle", [
    (lambda plan: plan["programs"][0]["runs"][0].pop("config"), [], "runs[0].config"),
    (lambda plan: plan.update(grid=[1]), [], "grid"),
    (lambda plan: None, ["--out", "sweep.xyz"], "unknown figure type .xyz"),
    (lambda plan: None, ["--table", "/proc/no-such-place/s.md"], "--table"),
])
def test_plotting_sweep_refuses_before_writing_anything(reference, tmp_path, edit, extra, needle):
    out = edited_copy(reference, tmp_path, edit)
    extra = [str(out / e) if e.startswith("sweep.") else e for e in extra]
    proc = subprocess.run([sys.executable, "-m", "plotting.sweep", str(out), *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not (out / "sweep.md").exists() and not (out / "sweep.png").exists()
