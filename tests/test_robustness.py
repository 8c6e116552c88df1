"""Robust runs: kill -9 or SIGTERM then --resume equals an uninterrupted run, two identical runs
give identical metrics, numerical guards, the up-front memory check. Real entry points, tiny budgets."""
import csv
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "perceptual_decision_making" / "tape_mpn.yaml")
TINY = [
    "--set", "env.num_envs=4", "--set", "episode.trials=2", "--set", "episode.max_steps=60",
    "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}", "--set", "model.head=[8]",
    "--set", "train.total_env_steps=3200", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128",
    "--set", "train.buffer_capacity=2048", "--set", "tape.size=128", "--set", "eval.every_env_steps=320",
    "--set", "eval.trials=10", "--set", "eval.final_trials=10", "--set", "eval.num_envs=4",
    "--set", "checkpoint.every_updates=8", "--no-progress",
]


def start(out, backend, *extra):
    return subprocess.Popen(
        [sys.executable, "tape_dqn.py", EXPERIMENT, "--out", str(out), *TINY, "--set", f"env.backend={backend}", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def finish(proc, expect=0):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expect, err[-3000:]
    return out, err


def run(out, backend, *extra):
    return finish(start(out, backend, *extra))


def resume(out):
    proc = subprocess.Popen([sys.executable, "tape_dqn.py", "--resume", str(out), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    return finish(proc)


def rows(out):
    """metrics.csv without the wall-time column."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(open(out / "metrics.csv"))]


def summary(out):
    s = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in s.items() if "wall" not in k}


def wait_for_checkpoint(proc, out, min_rows=4, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (out / "checkpoint.pkl").exists() and (out / "metrics.csv").exists():
            if sum(1 for _ in open(out / "metrics.csv")) - 1 >= min_rows:
                return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run per backend."""
    base = tmp_path_factory.mktemp("ref")
    for backend in ("jax", "neurogym"):
        run(base / backend, backend)
    return base


@pytest.mark.parametrize("backend", ["jax", "neurogym"])
def test_identical_runs_give_identical_metrics(tmp_path, reference, backend):
    run(tmp_path / "again", backend)
    assert len(rows(reference / backend)) == 10
    assert rows(tmp_path / "again") == rows(reference / backend)
    assert summary(tmp_path / "again") == summary(reference / backend)


@pytest.mark.parametrize("backend, how", [("jax", "kill"), ("neurogym", "kill"), ("jax", "term")])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, reference, backend, how):
    out = tmp_path / "run"
    proc = start(out, backend)
    wait_for_checkpoint(proc, out)
    if how == "kill":
        proc.kill()  # SIGKILL: no chance to write anything
        proc.wait()
    else:
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, expect=128 + signal.SIGTERM)
        assert "SIGTERM" in err and "--resume" in err
    assert not (out / "summary.json").exists()
    resume(out)
    assert rows(out) == rows(reference / backend)
    assert summary(out) == summary(reference / backend)
    # the run is finished: resuming again is refused
    proc = subprocess.run([sys.executable, "tape_dqn.py", "--resume", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_non_finite_loss_stops_the_run_naming_the_update(tmp_path):
    out = tmp_path / "run"
    _, err = finish(start(out, "neurogym", "--set", "train.lr=1e38", "--set", "train.grad_clip=1e38"), expect=3)
    line = err.strip().splitlines()[-1]
    assert "non-finite loss or parameters at update" in line and "Traceback" not in err
    assert not (out / "summary.json").exists()
    assert (out / "metrics.csv").read_text().startswith("env_steps,")


def test_a_buffer_that_cannot_fit_fails_at_once_quoting_the_figure(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tape_dqn.py", EXPERIMENT, "--out", str(tmp_path / "run"), "--set", "train.buffer_capacity=2000000000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "train.buffer_capacity" in proc.stderr and "GiB" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_misuse_is_a_one_line_error(tmp_path, capsys):
    from cli import cli_main

    assert cli_main(["--resume", str(tmp_path)], "tape") == 2
    assert "no checkpoint.pkl" in capsys.readouterr().err
    assert cli_main(["--resume", str(tmp_path), EXPERIMENT], "tape") == 2
    assert "--resume takes no config file" in capsys.readouterr().err
    assert cli_main([], "tape") == 2
    assert "give an experiment YAML file" in capsys.readouterr().err


def test_binary_garbage_is_not_valid_yaml(tmp_path, capsys):
    from cli import cli_main

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert cli_main([str(bad), "--out", str(tmp_path / "r")], "tape") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML" in err


# ---- hostile inputs: run folders, checkpoints, signals, disk (issue: no traceback, no lost run) ----


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A jax-backend run stopped by SIGTERM after a checkpoint (four or more rows written)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    proc = start(out, "jax")
    wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    finish(proc, expect=128 + signal.SIGTERM)
    return out


def copy_of(src, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def one_line_error(capsys, *needles):
    """The error is one line (besides the 'writing DIR/' line a resumed run prints first)."""
    err = "\n".join(x for x in capsys.readouterr().err.strip().splitlines() if ": writing " not in x)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_a_row_cut_short_by_a_crash_is_rewritten_not_glued(tmp_path, reference, interrupted):
    from cli import cli_main

    out = copy_of(interrupted, tmp_path)
    lines = (out / "metrics.csv").read_bytes().splitlines(keepends=True)
    import checkpoint as ck

    rows_seen = ck.load(out)["rows"][0]
    lines[rows_seen] = lines[rows_seen][:7]  # the last counted row lost its tail (never reached the disk)
    (out / "metrics.csv").write_bytes(b"".join(lines[: rows_seen + 1]))
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 0
    assert rows(out) == rows(reference / "jax")


def test_two_resumes_of_one_folder_cannot_run_at_once(tmp_path, interrupted, capsys):
    from cli import cli_main
    from runs import RunLock

    out = copy_of(interrupted, tmp_path)
    before = (out / "metrics.csv").read_bytes()
    lock = RunLock(out)  # as a first --resume would hold it
    try:
        assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 2
        one_line_error(capsys, "another process", "is running this run")
    finally:
        lock.release()
    assert (out / "metrics.csv").read_bytes() == before


def test_a_foreign_checkpoint_never_overwrites_a_finished_run(tmp_path, reference, interrupted, capsys):
    import shutil

    from cli import cli_main

    done = copy_of(reference / "jax", tmp_path)
    before = {f: (done / f).read_bytes() for f in ("summary.json", "params.msgpack", "metrics.csv")}
    shutil.copy(interrupted / "checkpoint.pkl", done / "checkpoint.pkl")
    assert cli_main(["--resume", str(done), "--no-progress"], "tape") == 2
    one_line_error(capsys, "belongs to another run")
    assert {f: (done / f).read_bytes() for f in before} == before


@pytest.mark.parametrize("content", [
    b"\x00garbage" * 100,
    __import__("pickle").dumps([1, 2, 3]),
    __import__("pickle").dumps({"format": 2, "backend": "jax"}),
    b"cos\nsystem\n(S'echo pwned'\ntR.",  # a pickle that would run a command
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, interrupted, capsys, content):
    from cli import cli_main

    out = copy_of(interrupted, tmp_path)
    (out / "checkpoint.pkl").write_bytes(content)
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 2
    one_line_error(capsys, "checkpoint")


def test_a_checkpoint_of_the_wrong_structure_is_one_line(tmp_path, interrupted, capsys):
    import checkpoint as ck
    from cli import cli_main

    out = copy_of(interrupted, tmp_path)
    data = ck.load(out)
    data["state"]["carry"]["ts"]["params"] = {"nothing": __import__("numpy").zeros(3)}
    ck.save(out, data)
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 2
    one_line_error(capsys, "does not fit this run")


def test_missing_files_before_resume_are_one_line(tmp_path, interrupted, capsys):
    from cli import cli_main

    out = copy_of(interrupted, tmp_path)
    (out / "metrics.csv").unlink()
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 2
    one_line_error(capsys, "metrics.csv is missing")
    assert cli_main(["--resume", str(tmp_path / "nowhere")], "tape") == 2
    one_line_error(capsys, "no such run folder")


def test_a_missing_seed_folder_is_one_line(tmp_path, capsys):
    import shutil

    from cli import cli_main

    out = tmp_path / "seeds"
    proc = start(out, "jax", "--seeds", "2", "--set", "train.total_env_steps=64000")
    t0 = time.time()
    while not ((out / "checkpoint.pkl").exists() and (out / "seed1" / "metrics.csv").exists()):
        assert proc.poll() is None and time.time() - t0 < 300
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    finish(proc, expect=128 + signal.SIGTERM)
    shutil.rmtree(out / "seed1")
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 2
    one_line_error(capsys, "seed1/ is missing")


@pytest.mark.parametrize("after", [0.3, 1.5])  # while importing jax; while setting up
def test_ctrl_c_while_starting_is_one_line_and_leaves_no_folder(tmp_path, after):
    out = tmp_path / "run"
    proc = start(out, "jax")
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc, expect=128 + signal.SIGINT)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert not out.exists() or (out / "checkpoint.pkl").exists()


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_one(tmp_path, reference, monkeypatch, capsys):
    import errno

    import checkpoint as ck
    from cli import cli_main

    real_save, calls = ck.save, []

    def flaky(folder, data):
        calls.append(1)
        if len(calls) == 6:  # the disk is full at the sixth checkpoint, after some rows
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(folder, data)

    out = tmp_path / "run"
    monkeypatch.setattr(ck, "save", flaky)
    assert cli_main([EXPERIMENT, "--out", str(out), *TINY, "--set", "env.backend=jax"], "tape") == 2
    one_line_error(capsys, "cannot write the checkpoint", "No space left")
    assert (out / "checkpoint.pkl").exists() and rows(out)  # the rows and the last good checkpoint are kept
    monkeypatch.setattr(ck, "save", real_save)
    assert cli_main(["--resume", str(out), "--no-progress"], "tape") == 0  # space freed: it continues
    assert rows(out) == rows(reference / "jax")


def test_a_full_disk_in_a_real_process_is_one_line(tmp_path):
    # files are capped at 20 KiB and SIGXFSZ ignored, so a write past the cap fails with EFBIG, as
    # on a full disk (a shell sets both: no preexec_fn in a process that runs JAX)
    out = tmp_path / "run"
    cmd = shlex.join([sys.executable, "tape_dqn.py", EXPERIMENT, "--out", str(out), *TINY, "--set", "env.backend=jax"])
    proc = subprocess.run(["bash", "-c", f"ulimit -f 20; trap '' XFSZ; exec {cmd}"], cwd=ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write" in proc.stderr.strip().splitlines()[-1]
