"""plotting/dynamics.py: the decoder on synthetic data (a planted variable is found, shuffled labels
stay at chance), the aligned time bins, the recorded arrays of a real tiny DelayMatchSample run
(trained with tape_dqn.py in the background from the module's first test) on both backends checked
against the task's periods and a re-run of the network, the command's figure, JSON and --data
files for a run, a folder of seeds and a GRU, and bad input (one line on stderr, exit 2)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from plotting import dynamics
from conftest import background_run

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
# DelayMatchSample's default timing at dt = 100 ms: fixation 3, sample 5, delay 10, test 5 steps,
# then a decision period of up to 9 steps that the first response ends
FIXED = [0] * 3 + [1] * 5 + [2] * 10 + [3] * 5

TINY = [
    "--no-progress", "--set", "env.backend=neurogym", "--set", "train.total_env_steps=512",
    "--set", "env.num_envs=4", "--set", "train.steps_per_iter=16", "--set", "train.learning_starts=128",
    "--set", "eval.every_env_steps=512", "--set", "eval.trials=20", "--set", "eval.final_trials=20",
    "--set", "eval.num_envs=4", "--set", "model.memory_kwargs={hidden: 8, input_proj: 4, input_bias: true}",
    "--set", "model.head=[8]", "--set", "tape.size=256", "--set", "train.buffer_capacity=4096",
]


@pytest.fixture(scope="module", autouse=True)
def _tiny_training(tmp_path_factory):
    """Start training the tiny run at the module's first test, alongside the tests that need no run."""
    yield from background_run(tmp_path_factory, "dyn", "experiments/delay_match_sample/tape_mpn.yaml", TINY)


@pytest.fixture(scope="module")
def tiny_run(_tiny_training):
    """A real DelayMatchSample run folder (neurogym backend, mpn hidden 8) trained for 512 env steps."""
    out, proc = _tiny_training
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def _copy_run(src: Path, dst: Path, **changes) -> Path:
    """A copy of a run folder with config entries changed ('env__backend': 'jax', ...)."""
    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        d = cfg
        for k in path:
            d = d[k]
        d[last] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


# ------------------------------------------------------------------------------------------------
# decoding and bins on synthetic data
# ------------------------------------------------------------------------------------------------
def test_decoding_finds_a_planted_variable_and_shuffled_labels_stay_at_chance():
    rng = np.random.default_rng(0)
    n, f = 400, 30
    for classes in (2, 3):
        y = rng.integers(0, classes, n)
        x = rng.normal(size=(n, f))
        x[np.arange(n), 7 + y] += 4.0  # the planted variable: one feature of 30 per class, 4 s.d. up
        assert dynamics.decode_accuracy(x, y) > 0.9
        shuffled = rng.permutation(y)
        chance = dynamics.chance_level(shuffled)
        assert abs(chance - 1 / classes) < 0.06
        assert abs(dynamics.decode_accuracy(x, shuffled) - chance) < 0.07
    # features [n, a, b] are flattened; a single class or a class of fewer than 5 trials: NaN
    assert dynamics.decode_accuracy(x.reshape(n, 5, 6), y) > 0.9
    assert np.isnan(dynamics.decode_accuracy(x, np.zeros(n, int)))
    assert np.isnan(dynamics.decode_accuracy(x[:12], np.r_[np.zeros(9, int), np.ones(3, int)]))


def test_aligned_bins_count_steps_from_each_period_start():
    # 20 trials: period 0 for 2 steps, period 1 for 1..4 steps (5 trials each), period 2 for 1 step
    period, valid = np.full((20, 8), -1, np.int8), np.zeros((20, 8), bool)
    for i in range(20):
        seq = [0, 0] + [1] * (1 + i // 5) + [2]
        period[i, :len(seq)], valid[i, :len(seq)] = seq, True
    bins = dynamics.aligned_bins(period, valid, 3, min_trials=5)
    # period 1: step k is reached by 20, 15, 10, 5 trials; half of 20 is needed
    assert [(p, k) for p, k, _, _ in bins] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
    for p, k, trials, steps in bins:
        assert np.all(period[trials, steps] == p)
        assert np.all(steps - np.argmax(period[trials] == p, 1) == k)
    assert len(bins[4][2]) == 10


# ------------------------------------------------------------------------------------------------
# a real tiny run
# ------------------------------------------------------------------------------------------------
def _check_records(d, cfg, network, params, trials):
    import jax
    import jax.numpy as jnp

    n = trials
    T = d["obs"].shape[1]
    assert d["obs"].shape == (n, T, 3) and d["h"].shape == (n, T, 8) and d["q"].shape == (n, T, 3)
    assert d["mem"].shape == (n, T, 8, 4)  # M [hidden, input_proj]
    assert list(d["periods"]) == ["fixation", "sample", "delay", "test", "decision"]
    assert set(d["trial_variables"]) >= {"ground_truth", "sample_theta", "test_theta"}
    for k in ("action", "gt", "period", "start", "valid", "length", "choice", "correct"):
        assert d[k].shape[0] == n
    p = params["params"]["memory"]
    eta, lam = float(p["eta"]), float(p["lam"])
    assert float(d["eta"]) == pytest.approx(eta) and float(d["lam"]) == pytest.approx(lam)
    gt_trial = d["trial_ground_truth"].astype(int)
    assert set(gt_trial) <= {1, 2}
    same = np.isclose(np.cos(d["trial_sample_theta"] - d["trial_test_theta"]), 1.0)
    assert np.array_equal(same, gt_trial == 1)  # match trials: ground truth 1
    assert np.array_equal(d["correct"], d["choice"] == gt_trial)
    L = d["length"]
    assert np.array_equal(d["valid"], np.arange(T)[None] < L[:, None])
    assert np.all((24 <= L) & (L <= 32))
    for i in range(n):
        per = d["period"][i, :L[i]]
        assert list(per[:23]) == FIXED and np.all(per[23:] == 4), per
        assert np.array_equal(d["gt"][i, :L[i]], np.where(per == 4, gt_trial[i], 0))
        # the trial ends at its first response in the decision period, or times out without one
        dec = d["action"][i, 23:L[i]]
        assert np.all(dec[:-1] == 0) and d["choice"][i] == dec[-1]
    valid = d["valid"]
    assert np.all(d["period"][~valid] == -1) and np.all(d["action"][~valid] == -1)
    # the memory is reset at each trial's first step (reset_memory_on_trial) and only there
    assert np.array_equal(d["start"], valid & (np.arange(T)[None] == 0))
    # re-running the network on each trial's observations gives the recorded q and h (steps after
    # a trial's end, padding, cannot change the steps before them) ...
    obs, start = jnp.asarray(d["obs"]), jnp.asarray(d["start"])
    q, _ = jax.jit(jax.vmap(lambda o, s: network.apply(params, o, s)))(obs, start)
    h, _ = jax.jit(jax.vmap(lambda o, s: network.memory.apply({"params": p}, o, s)))(obs, start)
    np.testing.assert_allclose(np.asarray(q)[valid], d["q"][valid], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h)[valid], d["h"][valid], rtol=1e-4, atol=1e-5)
    assert np.array_equal(d["action"][valid], d["q"][valid].argmax(-1))
    # ... and M follows the MPN's rule M_t = λ M_{t-1} + η h_t x_tᵀ from M = 0 at the trial's start,
    # x_t the layer input: the fixed projection of [obs_t, 1]
    x = np.concatenate([d["obs"], np.ones(d["obs"].shape[:2] + (1,), np.float32)], -1) @ np.asarray(p["input_proj"]).T
    m = np.zeros((n, 8, 4), np.float32)
    for t in range(T):
        m = lam * m + eta * d["h"][:, t, :, None] * x[:, t, None, :]
        np.testing.assert_allclose(d["mem"][valid[:, t], t], m[valid[:, t]], rtol=1e-3, atol=1e-4)


def test_records_on_both_backends(tiny_run, tmp_path):
    """The run was trained on the neurogym backend: record it there (real neurogym envs) and, from
    a copy whose config says jax, on the JAX port."""
    trials = 24
    checked = dynamics.load_network(tiny_run)
    d = dynamics.record_run(tiny_run, trials, 0, 8, checked=checked)
    assert str(d["backend"]) == "neurogym"
    _check_records(d, *checked, trials)
    jax_run = _copy_run(tiny_run, tmp_path / "jax", env__backend="jax")
    checked = dynamics.load_network(jax_run)
    d = dynamics.record_run(jax_run, trials, 0, 8, checked=checked)
    assert str(d["backend"]) == "jax"
    _check_records(d, *checked, trials)
    # other seeds give other trials
    d2 = dynamics.record_run(jax_run, trials, 1, 8, checked=checked)
    assert not np.array_equal(d2["obs"][:, :5], d["obs"][:, :5])


def test_command_writes_figure_json_and_data(tiny_run, tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path / "run", env__backend="jax")
    out, data = tmp_path / "fig" / "dyn.png", tmp_path / "data" / "dyn.npz"
    assert dynamics.main([str(run), "--trials", "30", "--num-envs", "8", "--out", str(out), "--data", str(data)]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".json")), str(data)]
    assert out.read_bytes()[:8] == PNG
    summary = json.loads(out.with_suffix(".json").read_text())
    (r,) = summary["runs"]
    assert summary["task"] == "DelayMatchSample-v0" and r["remembered_variable"] == "sample_theta"
    assert set(r["decoding"]) == {f"{t}_{s}" for t in ("remembered", "choice") for s in ("h", "M", "chance")}
    assert all(len(v) == len(r["steps"]) for v in r["decoding"].values())
    assert [s[0] for s in r["steps"][:23]] == [["fixation", "sample", "delay", "test", "decision"][p] for p in FIXED]
    # before the sample nothing can tell the sample apart: the decoder stays near chance
    fix = [a for a, s in zip(r["decoding"]["remembered_h"], r["steps"]) if s[0] == "fixation"]
    chance = r["decoding"]["remembered_chance"][0]
    assert all(a is None or abs(a - chance) < 0.25 for a in fix)
    with np.load(data) as z:
        assert z["obs"].shape[:1] == (30,) and z["mem"].shape[2:] == (8, 4)
        assert str(z["task"]) == "DelayMatchSample-v0" and str(z["memory"]) == "mpn"


def test_folder_of_seeds_and_gru(tiny_run, tmp_path, capsys):
    """A folder of two runs gives one figure and one data file per run; a GRU network (the tiny
    run's config with memory gru, initial parameters) leaves the memory panels out."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from learner import build_network

    seeds = tmp_path / "seeds"
    _copy_run(tiny_run, seeds / "seed0", env__backend="jax")
    _copy_run(tiny_run, seeds / "seed1", env__backend="jax", seed=1)
    out, data = tmp_path / "s.png", tmp_path / "s.npz"
    assert dynamics.main([str(seeds), "--trials", "20", "--num-envs", "8", "--out", str(out), "--data", str(data)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[2:] == [str(tmp_path / "s_seed0.npz"), str(tmp_path / "s_seed1.npz")]
    assert len(json.loads(out.with_suffix(".json").read_text())["runs"]) == 2

    gru = _copy_run(tiny_run, tmp_path / "gru", env__backend="jax", model__memory="gru",
                    model__memory_kwargs={"hidden": 8})
    cfg = yaml.safe_load((gru / "config.yaml").read_text())
    net = build_network(cfg, 3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.ones((1,), bool))
    (gru / "params.msgpack").write_bytes(serialization.to_bytes(params))
    fig, json_path, _, [(d, an)] = dynamics.dynamics(gru, tmp_path / "g.png", trials=20, num_envs=8)
    assert fig.read_bytes()[:8] == PNG
    assert d["mem"].shape == d["h"].shape and np.array_equal(d["mem"], d["h"])  # the GRU's state is h
    assert np.isnan(d["eta"]) and an["norm"] is None and "M" not in an["pca"]
    assert not any(s == "M" for _, s in an["decoding"])


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def _fails(capsys, argv, *words):
    assert dynamics.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m plotting.dynamics: error:"), err
    for w in words:
        assert w in err[0], err[0]


def test_bad_input_one_line_exit_2(tiny_run, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, [str(empty), "--out", out], "not a run folder")
    _fails(capsys, [str(tmp_path / "nope"), "--out", out], "no such file")
    no_params = _copy_run(tiny_run, tmp_path / "no_params")
    (no_params / "params.msgpack").unlink()
    _fails(capsys, [str(no_params), "--out", out], "params.msgpack")
    damaged = _copy_run(tiny_run, tmp_path / "damaged")
    (damaged / "config.yaml").write_text("env: {task: [unclosed\n")
    _fails(capsys, [str(damaged), "--out", out], "config.yaml")
    wrong = _copy_run(tiny_run, tmp_path / "wrong", model__memory="lstm")
    _fails(capsys, [str(wrong), "--out", out], "model.memory")
    for n in ("0", "-3"):
        _fails(capsys, [str(tiny_run), "--trials", n, "--out", out], "--trials")
    _fails(capsys, [str(tiny_run), "--seed", "-1", "--out", out], "--seed")
    with pytest.raises(SystemExit) as exit_:  # argparse's own errors: one line too
        dynamics.main([str(tiny_run), "--trials", "many"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--trials" in err[0]
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    _fails(capsys, [str(tiny_run), "--out", str(blocker / "x.png")], "--out")
    _fails(capsys, [str(tiny_run), "--out", out, "--data", str(blocker / "d.npz")], "--data")
    _fails(capsys, [str(tiny_run), "--out", str(tmp_path)], "--out")
    assert not (tmp_path / "x.png").exists()
    # the real command: exit status 2 and no traceback
    proc = subprocess.run([sys.executable, "-m", "plotting.dynamics", str(empty)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
