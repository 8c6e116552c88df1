"""Scan benchmark: the exact MPN as a sequential lax.scan versus Newton/DEER (scan="parallel",
memory/deer.py), and MPNpre (an exact monoid: one resettable associative scan).

    python -m benchmarks.scan [--quick] [--out FILE.json] [--plot FIG.png]

For every method, hidden size Nh and tape length T: the forward pass (`module.apply`) and
forward + backward (`jax.grad` of a scalar loss of the outputs and the final state, with respect
to all parameters), each compiled ahead of time (`jax.jit(f).lower(...).compile()`; that is what
`compile_s` times), called once to warm up, then timed over `reps` calls with
`jax.block_until_ready` before each clock read (`time_s` = median, `times_s` = all). The input is
raw D = Nx = 10 (no projection), x ~ N(0, 1), an episode start every 100 steps (NeuroGym-like
trials), eta = 0.1, lam = 0.95 (the module defaults). For the parallel method each record also
holds the Newton steps used, the residual and whether the sequential fallback ran (read from the
sown 'intermediates'; a fallback makes the time Newton + sequential).

Parallel runs that would not fit are skipped, with the reason in the record: when the dense
Jacobian blocks (T Nh Nx² floats, ~5 copies live in the associative scan) exceed --max-gb, or
when the time extrapolated linearly from the previous length exceeds --max-seconds per record.

Full sweep: T in {1e3, 1e4, 1e5} x Nh in {64, 128, 256} (~9 minutes on a 2-core CPU, most of it
compiling and the parallel runs). --quick: T in {1e3, 1e4}, Nh = 64, 2 reps (~1.5-2 minutes on
a 2-core CPU, ~75 s of it compilation). One JSON record per measurement (a list in --out), with the
jax version, backend and device name. --plot: time vs T, log-log, one panel per hidden size.
"""

from __future__ import annotations

import json
from pathlib import Path
import statistics
import time

from jaxenv import import_jax

jax = import_jax("python -m benchmarks.scan")  # JAX's environment variables, checked in one line
import jax.numpy as jnp
import numpy as np

from memory import MEMORY_ORDER, make_memory, model_class
from oneline import OneLineParser

INPUT_DIM = 10
EPISODE = 100


def methods() -> dict[str, tuple[str, dict]]:
    """Method name -> (registry name, keywords), from the registry: every model that declares
    `scan_modes` once per mode ("<name>_<mode>", e.g. mpn_sequential, mpn_parallel), and every
    `associative` model once ("<name>", e.g. mpn_pre); a sequential-only model (gru) is left out."""
    out = {}
    for name in MEMORY_ORDER:
        cls = model_class(name)
        out.update({f'{name}_{mode}': (name, dict(scan=mode)) for mode in cls.scan_modes})
        if cls.associative:
            out[name] = (name, {})
    return out


METHODS = methods()
FULL = dict(lengths=(1_000, 10_000, 100_000), hidden=(64, 128, 256))
QUICK = dict(lengths=(1_000, 10_000), hidden=(64,))


def tape(length: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(length, INPUT_DIM)), jnp.float32)
    start = jnp.asarray(np.arange(length) % EPISODE == 0)
    return x, start


def timed(compiled, args, reps: int) -> list[float]:
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return times


def measure(method: str, hidden: int, length: int, reps: int) -> list[dict]:
    """Two records (fwd, fwd_bwd) for one method / size / length."""
    name, kwargs = METHODS[method]
    module = make_memory(name, hidden=hidden, **kwargs)
    x, start = tape(length)
    variables = jax.jit(module.init)(jax.random.PRNGKey(0), x[:2], start[:2])

    def forward(v, x, start):
        return module.apply(v, x, start)

    def loss(v, x, start):
        y, m = module.apply(v, x, start)
        return jnp.mean(y ** 2) + jnp.mean(m ** 2)

    extra = {}
    if method == 'mpn_parallel':
        _, inter = jax.jit(lambda v, x, s: module.apply(v, x, s, mutable=['intermediates']))(
            variables, x, start)
        inter = inter['intermediates']
        extra = dict(newton_iters_used=int(inter['mpn_newton_iters'][0]),
                     newton_iters_max=module.newton_iters,
                     residual=float(inter['mpn_residual'][0]),
                     fallback=bool(inter['mpn_fallback'][0]))
    records = []
    for kind, fn in (('fwd', forward), ('fwd_bwd', jax.grad(loss))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(variables, x, start).compile()
        compile_s = time.perf_counter() - t0
        times = timed(compiled, (variables, x, start), reps)
        records.append(dict(method=method, hidden=hidden, length=length, input_dim=INPUT_DIM,
                            episode_length=EPISODE, kind=kind, time_s=statistics.median(times),
                            times_s=times, compile_s=compile_s, reps=reps, **extra))
    return records


def parallel_gb(hidden: int, length: int) -> float:
    """Rough peak memory of the parallel path: ~5 live copies of the dense Jacobian blocks."""
    return 5 * length * hidden * INPUT_DIM ** 2 * 4 / 2**30


def run(lengths, hiddens, reps: int, max_gb: float, max_seconds: float, log=print) -> list[dict]:
    device = jax.devices()[0]
    meta = dict(jax_version=jax.__version__, backend=jax.default_backend(),
                device=device.device_kind, num_devices=jax.device_count())
    records = []
    for hidden in hiddens:
        for method in METHODS:
            last = None  # (length, slowest record time) of the previous length
            for length in lengths:
                skip = None
                if method == 'mpn_parallel' and parallel_gb(hidden, length) > max_gb:
                    skip = (f'estimated memory {parallel_gb(hidden, length):.1f} GB > '
                            f'--max-gb {max_gb}')
                elif last is not None:
                    predicted = last[1] * length / last[0] * (reps + 1)
                    if predicted > max_seconds:
                        skip = (f'extrapolated {predicted:.0f} s for warm-up + {reps} reps > '
                                f'--max-seconds {max_seconds}')
                if skip:
                    for kind in ('fwd', 'fwd_bwd'):
                        records.append(dict(method=method, hidden=hidden, length=length,
                                            input_dim=INPUT_DIM, kind=kind, skipped=skip, **meta))
                    log(f'{method:15s} Nh={hidden:4d} T={length:7d}  skipped: {skip}')
                    continue
                recs = measure(method, hidden, length, reps)
                for r in recs:
                    r.update(meta)
                    records.append(r)
                    info = ''
                    if 'newton_iters_used' in r:
                        info = (f"  newton={r['newton_iters_used']} res={r['residual']:.1e} "
                                f"fallback={r['fallback']}")
                    log(f"{method:15s} Nh={hidden:4d} T={length:7d} {r['kind']:8s} "
                        f"{1e3 * r['time_s']:10.2f} ms  (compile {r['compile_s']:.1f} s){info}")
                last = (length, max(r['time_s'] for r in recs))
    return records


def summarize(records: list[dict]) -> list[str]:
    """Parallel vs sequential ratios per (Nh, T, kind), and where parallel overtakes."""
    lines = []
    t = {(r['method'], r['hidden'], r['length'], r['kind']): r['time_s']
         for r in records if 'time_s' in r}
    for (method, hidden, length, kind), par in sorted(t.items()):
        if method != 'mpn_parallel' or ('mpn_sequential', hidden, length, kind) not in t:
            continue
        seq = t[('mpn_sequential', hidden, length, kind)]
        pre = t.get(('mpn_pre', hidden, length, kind))
        lines.append(f'Nh={hidden:4d} T={length:7d} {kind:8s} parallel/sequential = '
                     f'{par / seq:8.1f}x  (sequential {1e3 * seq:.1f} ms, parallel '
                     f'{1e3 * par:.1f} ms' + (f', mpn_pre {1e3 * pre:.1f} ms)' if pre else ')'))
    return lines


def plot(records: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ok = [r for r in records if 'time_s' in r]
    hiddens = sorted({r['hidden'] for r in ok})
    fig, axes = plt.subplots(1, len(hiddens), figsize=(5 * len(hiddens), 4), squeeze=False,
                             sharey=True)
    colors = dict(mpn_sequential='C0', mpn_parallel='C3', mpn_pre='C2')
    for ax, hidden in zip(axes[0], hiddens):
        for method in METHODS:
            for kind, style in (('fwd_bwd', '-'), ('fwd', '--')):
                pts = sorted((r['length'], r['time_s']) for r in ok
                             if r['method'] == method and r['hidden'] == hidden
                             and r['kind'] == kind)
                if pts:
                    # a method with no colour of its own (a new model) takes the colour cycle's
                    ax.plot(*zip(*pts), style, marker='o', color=colors.get(method),
                            label=f'{method} {kind}')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_title(f'Nh = {hidden}, Nx = {INPUT_DIM}')
        ax.set_xlabel('tape length T')
        ax.grid(True, which='both', alpha=0.3)
    axes[0][0].set_ylabel('time per call [s]')
    axes[0][-1].legend(fontsize=7)
    meta = ok[0] if ok else {}
    fig.suptitle(f"MPN scans on {meta.get('device', '?')} ({meta.get('backend', '?')}), "
                 f"jax {meta.get('jax_version', '?')}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = OneLineParser(prog="python -m benchmarks.scan", description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='T in {1e3, 1e4}, Nh = 64 only')
    ap.add_argument('--out', help='write the records as a JSON list to this file')
    ap.add_argument('--plot', help='write a log-log plot of time vs T to this PNG')
    ap.add_argument('--reps', type=int, help='timed calls per record (median); default 3, '
                    '2 with --quick')
    ap.add_argument('--lengths', type=int, nargs='+', help='override the tape lengths')
    ap.add_argument('--hidden', type=int, nargs='+', help='override the hidden sizes')
    ap.add_argument('--max-gb', type=float, default=8.0,
                    help='skip parallel runs whose estimated memory exceeds this')
    ap.add_argument('--max-seconds', type=float, default=120.0,
                    help='skip a record whose extrapolated time exceeds this')
    args = ap.parse_args(argv)
    from plotting.common import PlotError, check_figure, check_writable

    try:  # every input checked before minutes of measuring
        for name, values in (("--lengths", args.lengths), ("--hidden", args.hidden), ("--reps", [args.reps])):
            if any(v is not None and not 1 <= v <= 10**8 for v in values or []):
                raise PlotError(f"{name}: every value must lie in [1, 1e8]")
        if not (args.max_gb > 0 and args.max_seconds > 0):  # NaN fails too
            raise PlotError("--max-gb and --max-seconds must be positive numbers")
        if args.out:
            check_writable(Path(args.out), "--out")
        if args.plot:
            check_writable(check_figure(args.plot, "--plot"), "--plot")
    except PlotError as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    grid = QUICK if args.quick else FULL
    lengths = tuple(args.lengths or grid['lengths'])
    hiddens = tuple(args.hidden or grid['hidden'])
    t0 = time.perf_counter()
    reps = args.reps or (2 if args.quick else 3)
    records = run(lengths, hiddens, reps, args.max_gb, args.max_seconds)
    for r in records:
        r['quick'] = args.quick
    print('\n'.join(summarize(records)))
    print(f'total {time.perf_counter() - t0:.0f} s')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(records, f, indent=1)
    if args.plot:
        plot(records, args.plot)


if __name__ == '__main__':
    main()
