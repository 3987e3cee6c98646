#!/usr/bin/env python
"""The benchmark record: every figure of docs/benchmarks.md, measured in one run, with the machine.

  python scripts/benchmark.py                            # ~15 minutes on 2 CPU cores
  python scripts/benchmark.py --torch-python /tmp/torchvenv/bin/python   # with the PyTorch baseline
  python scripts/benchmark.py --quick --out /tmp/record.json             # seconds: a smoke test
  python scripts/benchmark.py --render                   # docs from the committed JSON only

Writes `docs/results/benchmarks/record.json`: the CPU model (`/proc/cpuinfo` and `lscpu`), the core
count, the jax/jaxlib/numpy/optax versions, the date and the exact command, and for each figure
every round's raw number with its median and range ([min, max]). Then it rewrites the blocks of
docs/benchmarks.md between `<!-- benchmark: NAME -->` and `<!-- /benchmark -->` from the JSON
(`render`); `tests/test_benchmark_record.py` fails when the page and the committed JSON disagree.
`--quick` writes only to `--out` and leaves the docs alone unless `--docs` is given.

The figures (each compares programs interleaved in a shuffled order within every round):

  train_step        ms/step of the MNIST-1D CNN at batch 100 for CE and each method of the table
                    (`bench_train.time_methods`), the step's FLOPs by XLA's cost analysis, its
                    achieved GFLOP/s, and its share of a 1024x1024 float32 matmul's GFLOP/s timed
                    on the same cores in the same run (before and after the steps).
  whole_process     the default run (`scripts/train.py --config=configs/mnist1d.py`, 6000 steps),
                    the same run for 1 step (the fixed cost), and `scripts/torch_mnist1d.py` when
                    `--torch-python` (default: this interpreter) can import torch; else recorded
                    as skipped with the reason. One untimed run of each first (warm caches).
  sweep_throughput  `scripts/sweep.py configs/sweeps/strength.py --seeds 0 --override
                    num_steps=2000` (10 runs, default parallelism and workers), the same with
                    `--process-per-run`, and one of its runs alone; throughput ratio = 10 x one
                    run / sweep, per round, for each.
  seed_batching     the loop's step for 10 seeds at once (`jax.vmap` over stacked states, batches
                    and keys) against 10 calls of the one-seed step, for the MNIST-1D CNN and MLP:
                    the paired ratio of their times per seed-step, per round.
  fused_loss        loss and gradients w.r.t. hidden and kernel: the default path
                    `losses.linear_smoothed_cross_entropy_and_grads`, `jax.value_and_grad` of
                    `losses.linear_smoothed_cross_entropy` (both modes) and of `h @ W` + a loss
                    on the logits (`bench_losses.fused_steps`), at (8192, 1024, 128000) by
                    default (8 GiB of temporaries for the baseline, ~20 s a call on 2 cores);
                    paired time ratio to `h @ W` + optax integer-label CE per round, and XLA's
                    compiled temporary memory.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

RECORD = ROOT / "docs" / "results" / "benchmarks" / "record.json"
DOCS = ROOT / "docs" / "benchmarks.md"
FIGURES = ("train_step", "whole_process", "sweep_throughput", "seed_batching", "fused_loss")
BLOCK = re.compile(r"(<!-- benchmark: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /benchmark -->)",
                   re.DOTALL)
MATMUL_SIZE = 1024


def summary(values) -> dict:
  """Every round's number, their median and range."""
  values = [float(v) for v in values]
  return {"rounds": values, "median": statistics.median(values),
          "range": [min(values), max(values)]}


def _timed(command: list[str]) -> float:
  start = time.perf_counter()
  done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise RuntimeError(f"{shlex.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
  return seconds


def _shuffled_rounds(commands: dict, rounds: int, seed: int, warm_up: bool) -> dict:
  """Wall seconds of each command (a callable giving the argv), all interleaved per round."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if warm_up:
    for make in commands.values():
      _timed(make())
  times = {name: [] for name in commands}
  order = np.random.default_rng(seed)
  for _ in range(rounds):
    for name in order.permutation(list(commands)):
      times[str(name)].append(_timed(commands[name]()))
  return times


def _display(command: list[str]) -> str:
  """argv as a shell line, paths relative to the repository, temporary directories as <tmp>."""
  line = shlex.join(command).replace(str(ROOT) + "/", "")
  return re.sub(re.escape(tempfile.gettempdir()) + r"/(tmp|pytest-of-)[^/\s]+", "<tmp>", line)


# --- The measurements ------------------------------------------------------------------------

def machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer import host  # pylint: disable=g-import-not-at-top
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    lscpu_model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                        if line.startswith("Model name")), None)
  except (OSError, subprocess.CalledProcessError):
    lscpu_model = None
  return {"cpu_model": host.cpu_model(), "lscpu_model_name": lscpu_model,
          "cores": os.cpu_count(), "cores_available": host.cores_available(),
          "backend": jax.default_backend(), "devices": jax.device_count(),
          "platform": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__,
          # Its import time is part of every process's (requirements.txt).
          "ml_dtypes": ml_dtypes.__version__, "optax": optax.__version__,
          "load_average_at_start": os.getloadavg()[0]}


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])


def _matmul_timings(matmul, args, timings: int, calls: int) -> list[float]:
  import jax  # pylint: disable=g-import-not-at-top
  seconds = []
  for _ in range(timings):
    start = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(matmul(*args))
    seconds.append((time.perf_counter() - start) / calls)
  return seconds


def measure_train_step(quick: bool, rounds: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import bench_train  # pylint: disable=g-import-not-at-top
  from configs import mnist1d  # pylint: disable=g-import-not-at-top
  methods = dict(list(bench_train.METHODS.items())[:2]) if quick else bench_train.METHODS
  steps = 20 if quick else 200
  timings = 2 if quick else max(rounds, 15)
  a, b = (jax.random.normal(key, (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
          for key in jax.random.split(jax.random.key(0)))
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  jax.block_until_ready(matmul(a, b))
  calls = 3 if quick else 20
  matmul_seconds = _matmul_timings(matmul, (a, b), timings // 2 or 1, calls)
  times, compiled = bench_train.time_methods(mnist1d.get_config(), (40,), steps, timings, methods)
  matmul_seconds += _matmul_timings(matmul, (a, b), timings - timings // 2, calls)
  matmul_gflops = summary([2 * MATMUL_SIZE**3 / s / 1e9 for s in matmul_seconds])
  ce_median = statistics.median(times["CE"])
  result = {}
  for method, (_, step, carry, inputs) in compiled.items():
    flops = _flops(step.lower(*carry, *inputs, jax.random.key(1), None).compile())
    ms = summary([s * 1e3 for s in times[method]])
    gflops = flops / (ms["median"] / 1e3) / 1e9
    result[method] = {"ms_per_step": ms, "vs_ce": ms["median"] / (ce_median * 1e3),
                      "flops": flops, "gflops_per_s": gflops,
                      "matmul_roofline_share": gflops / matmul_gflops["median"],
                      "compilations": step._cache_size()}  # pylint: disable=protected-access
  return {"model": "cnn1d (configs/mnist1d.py)", "batch_size": 100, "steps_per_timing": steps,
          "timings": timings, "methods": result,
          "matmul": {"shape": [MATMUL_SIZE, MATMUL_SIZE], "dtype": "float32",
                     "calls_per_timing": calls, "gflops_per_s": matmul_gflops}}


def _torch_version(python: str | None) -> tuple[str | None, str | None]:
  """(torch version, None) or (None, why not)."""
  if not python:
    return None, "no --torch-python given"
  try:
    done = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, timeout=120)
  except OSError as error:
    return None, f"{python}: {error}"
  if done.returncode:
    return None, (f"torch is not importable by {_display([python])} (not in requirements.txt; "
                  "pass --torch-python with an interpreter that has it)")
  return done.stdout.strip(), None


def measure_whole_process(quick: bool, rounds: int, torch_python: str | None) -> dict:
  import bench_train  # pylint: disable=g-import-not-at-top
  num_steps = 20 if quick else 6000
  torch_version, skipped = _torch_version(torch_python)
  with tempfile.TemporaryDirectory() as tmp:
    counter = iter(range(10**6))
    ours = lambda *flags: [sys.executable, str(ROOT / "scripts/train.py"),
                           "--config=configs/mnist1d.py", *flags,
                           f"--workdir={tmp}/run{next(counter)}"]
    default_flags = [] if num_steps == 6000 else [f"--config.num_steps={num_steps}"]
    commands = {"ls_jax": lambda: ours(*default_flags),
                "ls_jax, 1 step": lambda: ours("--config.num_steps=1")}
    if torch_version:
      cache = f"{tmp}/mnist1d.npz"
      bench_train.write_torch_data(cache)
      commands["pytorch"] = lambda: [torch_python, str(ROOT / "scripts/torch_mnist1d.py"),
                                     f"--data={cache}", f"--num_steps={num_steps}"]
    shown = {name: _display(make()) for name, make in commands.items()}
    times = _shuffled_rounds(commands, rounds, seed=1, warm_up=not quick)
  result = {"num_steps": num_steps, "rounds": rounds, "warm_up_runs": 0 if quick else 1,
            "processes": {name: {"command": shown[name], "seconds": summary(times[name])}
                          for name in commands},
            "fixed_cost_s": summary(times["ls_jax, 1 step"]),
            "steps_s": statistics.median(times["ls_jax"])
                       - statistics.median(times["ls_jax, 1 step"])}
  if torch_version:
    result["torch"] = {"version": torch_version, "python": torch_python}
    result["pytorch_over_ls_jax"] = summary(
        [t / s for t, s in zip(times["pytorch"], times["ls_jax"])])
  else:
    result["torch"] = {"skipped": skipped}
  return result


def measure_sweep(quick: bool, rounds: int) -> dict:
  num_steps = 20 if quick else 2000
  match = ["--match", r"label_smoothing=0\.[15]_"] if quick else []
  sweep_file = "configs/sweeps/strength.py"
  with tempfile.TemporaryDirectory() as tmp:
    counter = iter(range(10**6))
    sweep = lambda: [sys.executable, str(ROOT / "scripts/sweep.py"), sweep_file,
                     "--out", f"{tmp}/sweep{next(counter)}", "--seeds", "0",
                     "--override", f"num_steps={num_steps}", *match]
    printed = subprocess.run(sweep() + ["--print"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    single_command = shlex.split(printed[0])
    workdir = next(arg.split("=", 1)[1] for arg in single_command
                   if arg.startswith("--workdir="))

    def single():
      shutil.rmtree(workdir, ignore_errors=True)  # A fresh run every time, never a resume.
      return single_command

    _timed(single())  # Untimed: warms the compilation and file caches.
    shown = {"sweep": _display(sweep()).replace(f"/sweep{next(counter) - 1} ", "/sweepN "),
             "single": _display(single_command)}
    per_run = lambda: sweep() + ["--process-per-run"]
    shown["process_per_run"] = _display(per_run()).replace(
        f"/sweep{next(counter) - 1} ", "/sweepN ")
    times = _shuffled_rounds({"sweep": sweep, "process_per_run": per_run, "single": single},
                             rounds, seed=2, warm_up=False)
  import sweep as sweep_script  # pylint: disable=g-import-not-at-top
  runs = len(printed)
  return {"sweep_file": sweep_file, "runs": runs, "num_steps": num_steps, "rounds": rounds,
          "parallel": sweep_script.DEFAULT_PARALLEL,
          "sweep": {"command": shown["sweep"], "seconds": summary(times["sweep"])},
          "process_per_run": {"command": shown["process_per_run"],
                              "seconds": summary(times["process_per_run"])},
          "single": {"command": shown["single"], "seconds": summary(times["single"])},
          "throughput_ratio": summary(
              [runs * one / whole for one, whole in zip(times["single"], times["sweep"])]),
          "process_per_run_throughput_ratio": summary(
              [runs * one / whole
               for one, whole in zip(times["single"], times["process_per_run"])])}


def measure_seed_batching(quick: bool, rounds: int) -> dict:
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import mnist1d  # pylint: disable=g-import-not-at-top
  from ls_jax import models  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer import state as state_lib  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer import tasks, train  # pylint: disable=g-import-not-at-top
  seeds, steps = 10, (5 if quick else 100)
  result = {"seeds": seeds, "steps_per_timing": steps, "rounds": rounds, "models": {}}
  for variant in ("cnn", "mlp"):
    config = mnist1d.get_config(variant)
    model = models.get_model(config.model.name, num_classes=config.num_classes)
    tx = state_lib.make_optimizer(config.optimizer, config.num_steps)
    task = tasks.task_for(config)
    init = functools.partial(state_lib.create_train_state, model=model, input_shape=(40,), tx=tx)
    step = functools.partial(train.train_step, model=model, config=config, task=task)
    data = np.random.default_rng(0)
    batches = {"image": data.normal(size=(seeds, config.batch_size, 40)).astype(np.float32),
               "label": data.integers(0, 10, (seeds, config.batch_size)).astype(np.int32)}
    keys = jax.random.split(jax.random.key(0), seeds)
    sums = {name: np.zeros((seeds,), np.float32) for name in task.step_metric_names}
    one = jax.jit(step, donate_argnums=(0, 1))
    many = jax.jit(jax.vmap(step), donate_argnums=(0, 1))
    carries = {"one": [(init(k), {n: v[0] for n, v in sums.items()}) for k in keys],
               "many": (jax.vmap(init)(keys), sums)}
    single = [jax.tree.map(lambda x, i=i: x[i], batches) for i in range(seeds)]

    def run_one():
      for _ in range(steps):
        for i in range(seeds):
          carries["one"][i] = one(*carries["one"][i], single[i], keys[i])
      jax.block_until_ready(carries["one"])

    def run_many():
      for _ in range(steps):
        carries["many"] = many(*carries["many"], batches, keys)
      jax.block_until_ready(carries["many"])

    programs = {"one seed per call": run_one, f"{seeds} seeds per call (vmap)": run_many}
    for program in programs.values():  # Compiles and warms up.
      program()
    times = {name: [] for name in programs}
    order = np.random.default_rng(3)
    for _ in range(rounds):
      for name in order.permutation(list(programs)):
        start = time.perf_counter()
        programs[name]()
        times[str(name)].append((time.perf_counter() - start) / (steps * seeds))
    one_name, many_name = programs
    result["models"][config.model.name] = {
        name: {"ms_per_seed_step": summary([t * 1e3 for t in times[name]])} for name in programs}
    result["models"][config.model.name]["speedup"] = summary(
        [a / b for a, b in zip(times[one_name], times[many_name])])
  return result


def measure_fused(quick: bool, rounds: int, shape: tuple[int, int, int]) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import bench_losses  # pylint: disable=g-import-not-at-top
  from ls_jax import losses  # pylint: disable=g-import-not-at-top
  num_tokens, dim, num_classes = shape
  chunk_size = min(losses.LINEAR_CHUNK_SIZE, num_classes)
  block_size = min(losses.LINEAR_BLOCK_SIZE, num_tokens)
  key_hidden, key_kernel, key_labels = jax.random.split(jax.random.PRNGKey(0), 3)
  hidden = jax.random.normal(key_hidden, (num_tokens, dim), jnp.float32) / dim**0.5
  kernel = jax.random.normal(key_kernel, (dim, num_classes), jnp.float32)
  labels = jax.random.randint(key_labels, (num_tokens,), 0, num_classes)
  compiled = {}
  # Each path returns (loss, (d_hidden, d_kernel)): jax.value_and_grad of a scalar loss, or the
  # fused entry point that returns its gradients itself (the language model's step).
  for name, step in bench_losses.fused_steps(chunk_size, block_size).items():
    executable = jax.jit(step).lower(hidden, kernel, labels).compile()
    compiled[name] = (executable, executable.memory_analysis().temp_size_in_bytes)
  times = bench_losses.time_interleaved(
      {name: executable for name, (executable, _) in compiled.items()},
      (hidden, kernel, labels), rounds)
  baseline = bench_losses.FUSED_BASELINE
  paths = {}
  for name, (_, temp) in compiled.items():
    paths[name] = {
        "ms": summary([s * 1e3 for s in times[name]]),
        "time_ratio": summary([mine / theirs for mine, theirs in zip(times[name], times[baseline])]),
        "temp_bytes": temp,
        "memory_ratio": compiled[baseline][1] / temp if temp else None}
  return {"shape": {"N": num_tokens, "d": dim, "V": num_classes}, "dtype": "float32",
          "label_smoothing": bench_losses.LABEL_SMOOTHING, "chunk_size": chunk_size,
          "block_size": block_size, "rounds": rounds, "baseline": baseline,
          "default_path": bench_losses.fused_and_grads_name(block_size), "paths": paths,
          "note": None if quick or shape == (8192, 1024, 128000) else (
              "the issue's (8192, 1024, 128000) takes minutes per call and 8 GiB of temporaries "
              "on 2 cores: measured at a smaller size")}


# --- Rendering ---------------------------------------------------------------------------------

def _range(s: dict, digits: int) -> str:
  return f"{s['median']:.{digits}f} [{s['range'][0]:.{digits}f}, {s['range'][1]:.{digits}f}]"


def render(record: dict) -> dict[str, str]:
  """The markdown of each docs block, from the record alone."""
  m = record["machine"]
  blocks = {}
  blocks["machine"] = (
      f"Machine: {m['cpu_model']} (`lscpu`: {m['lscpu_model_name']}), {m['cores']} cores, "
      f"backend {m['backend']}; jax {m['jax']}, jaxlib {m['jaxlib']}, numpy {m['numpy']}, "
      f"ml_dtypes {m['ml_dtypes']}, optax {m['optax']}, Python {m['python']}. Each table names "
      "the command that measured it and when "
      "(`--only` remeasures some figures and keeps the others). Raw rounds: "
      "[`docs/results/benchmarks/record.json`](results/benchmarks/record.json). "
      "Numbers are median [min, max] over the rounds; compare only within one machine.\n")
  figures = record["figures"]
  step = figures["train_step"]
  mm = step["matmul"]
  lines = [f"MNIST-1D CNN at batch {step['batch_size']}, {step['timings']} timings of "
           f"{step['steps_per_timing']} steps per method, interleaved. FLOP from XLA's cost "
           "analysis of the whole compiled step (forward, backward, optimizer). Matmul "
           f"roofline: {mm['shape'][0]}x{mm['shape'][1]} float32 matmul, "
           f"{_range(mm['gflops_per_s'], 0)} GFLOP/s on the same cores in the same run.", "",
           "| method | ms/step | vs CE | MFLOP/step | GFLOP/s | share of matmul roofline "
           "| compilations |", "|---|---:|---:|---:|---:|---:|---:|"]
  for method, row in step["methods"].items():
    lines.append(f"| {method} | {_range(row['ms_per_step'], 3)} | {row['vs_ce']:.3f}x "
                 f"| {row['flops'] / 1e6:.1f} | {row['gflops_per_s']:.1f} "
                 f"| {row['matmul_roofline_share'] * 100:.1f}% | {row['compilations']} |")
  blocks["train_step"] = "\n".join(lines) + "\n"
  whole = figures["whole_process"]
  lines = [f"{whole['rounds']} round(s) in a shuffled order, after {whole['warm_up_runs']} "
           "untimed run(s) of each; wall seconds of the whole process.", "",
           "| process | command | seconds |", "|---|---|---:|"]
  for name, row in whole["processes"].items():
    lines.append(f"| {name} | `{row['command']}` | {_range(row['seconds'], 2)} |")
  lines.append("")
  if "pytorch_over_ls_jax" in whole:
    lines.append(f"PyTorch {whole['torch']['version']} ÷ ls_jax, per round: "
                 f"**{_range(whole['pytorch_over_ls_jax'], 2)}x**. ")
  else:
    lines.append(f"PyTorch: skipped, {whole['torch']['skipped']}. ")
  lines[-1] += (f"Fixed cost (the 1-step run): {whole['fixed_cost_s']['median']:.2f} s; the "
                f"{whole['num_steps']} steps: {whole['steps_s']:.2f} s (difference of medians).")
  blocks["whole_process"] = "\n".join(lines) + "\n"
  sweep = figures["sweep_throughput"]
  blocks["sweep_throughput"] = "\n".join([
      f"{sweep['runs']} runs of {sweep['num_steps']} steps (`{sweep['sweep_file']}`, one seed), "
      f"`sweep.py` at its default `--parallel {sweep['parallel']}` (worker processes) and with "
      f"`--process-per-run`, against one of its runs alone; {sweep['rounds']} round(s) in a "
      "shuffled order.", "",
      "| process | command | seconds |", "|---|---|---:|",
      f"| sweep.py, {sweep['runs']} runs | `{sweep['sweep']['command']}` "
      f"| {_range(sweep['sweep']['seconds'], 1)} |",
      f"| sweep.py --process-per-run, {sweep['runs']} runs "
      f"| `{sweep['process_per_run']['command']}` "
      f"| {_range(sweep['process_per_run']['seconds'], 1)} |",
      f"| one run alone | `{sweep['single']['command']}` "
      f"| {_range(sweep['single']['seconds'], 1)} |", "",
      f"Throughput ratio ({sweep['runs']} × one run ÷ sweep), per round: "
      f"**{_range(sweep['throughput_ratio'], 2)}x**; with `--process-per-run`: "
      f"**{_range(sweep['process_per_run_throughput_ratio'], 2)}x**."]) + "\n"
  batching = figures["seed_batching"]
  lines = [f"The loop's step (`train.train_step`) for {batching['seeds']} seeds in one call "
           f"(`jax.vmap` over stacked states, batches and keys) against {batching['seeds']} calls "
           f"of the one-seed step; {batching['rounds']} interleaved rounds of "
           f"{batching['steps_per_timing']} steps, after a warm-up.", "",
           "| model | program | ms per seed-step | speedup (one ÷ vmap, per round) |",
           "|---|---|---:|---:|"]
  for model_name, row in batching["models"].items():
    for name, timing in row.items():
      if name != "speedup":
        lines.append(f"| {model_name} | {name} | {_range(timing['ms_per_seed_step'], 3)} | |")
    lines.append(f"| {model_name} | | | **{_range(row['speedup'], 2)}x** |")
  blocks["seed_batching"] = "\n".join(lines) + "\n"
  fused = figures["fused_loss"]
  shape = fused["shape"]
  lines = [f"Forward+grad of the mean loss w.r.t. hidden and kernel at (N, d, V) = "
           f"({shape['N']}, {shape['d']}, {shape['V']}), {fused['dtype']}, a = "
           f"{fused['label_smoothing']}, chunk {fused['chunk_size']}"
           + (f", block {fused['block_size']} tokens" if "block_size" in fused else "")
           + f"; {fused['rounds']} "
           "interleaved rounds after a warm-up call. The time ratio is paired: each round's time "
           "over the baseline's in the same round. Temp is XLA's compiled temporary memory."
           + (f" Note: {fused['note']}." if fused.get("note") else ""), "",
           "| path | fwd+grad ms | × h @ W + optax, per round | temp MiB | memory ÷ h @ W + optax |",
           "|---|---:|---:|---:|---:|"]
  for name, row in fused["paths"].items():
    label = name + (" (default)" if name == fused["default_path"] else "")
    memory = f"{row['memory_ratio']:.1f}" if row["memory_ratio"] else "—"
    lines.append(f"| {label} | {_range(row['ms'], 0)} | {_range(row['time_ratio'], 2)} "
                 f"| {row['temp_bytes'] / 2**20:.1f} | {memory} |")
  blocks["fused_loss"] = "\n".join(lines) + "\n"
  return blocks


def sync_docs(text: str, record: dict) -> str:
  """`text` with every benchmark block rewritten from the record."""
  blocks = render(record)

  def replace(match):
    name = match.group("name")
    if name not in blocks:
      raise ValueError(f"unknown benchmark block {name!r}; known: {', '.join(blocks)}")
    stamp = record["figures"].get(name, {}).get("measured")
    block = blocks[name] if stamp is None else (
        f"Measured by `{stamp['command']}` on {stamp['date'][:10]}, load average "
        f"{stamp['load_average_at_start']:.1f} at the start.\n\n" + blocks[name])
    return match.group(1) + block + match.group(4)
  return BLOCK.sub(replace, text)


# --- Main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="a tiny version in seconds (smoke test); writes only --out")
  parser.add_argument("--out", help=f"the JSON (default {RECORD.relative_to(ROOT)}; required "
                      "with --quick)")
  parser.add_argument("--docs", help=f"the page whose blocks to rewrite (default "
                      f"{DOCS.relative_to(ROOT)}, none with --quick)")
  parser.add_argument("--render", action="store_true",
                      help="measure nothing: rewrite the docs' blocks from the existing JSON")
  parser.add_argument("--rounds", type=int, default=5,
                      help="rounds of the whole-process and fused figures (default 5)")
  parser.add_argument("--sweep-rounds", type=int, default=5, help="rounds of the sweep (default 5)")
  parser.add_argument("--torch-python", default=sys.executable,
                      help="the interpreter that runs scripts/torch_mnist1d.py (default: this one)")
  parser.add_argument("--fused-shape", default="8192,1024,128000", help="N,d,V of the fused loss")
  parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES),
                      help="measure these figures; the others are kept from the existing JSON")
  args = parser.parse_args(argv)
  if args.quick and not args.out:
    parser.error("--quick needs --out (the committed record is not for smoke tests)")
  out = pathlib.Path(args.out) if args.out else RECORD
  docs = pathlib.Path(args.docs) if args.docs else (None if args.quick else DOCS)
  if args.render:
    record = json.loads(out.read_text())
  else:
    start = time.perf_counter()
    previous = json.loads(out.read_text()) if out.exists() and set(args.only) != set(FIGURES) else {}
    figures = dict(previous.get("figures", {}))
    here = machine()
    same = ("cpu_model", "cores", "backend", "jax", "jaxlib", "numpy", "ml_dtypes", "optax")
    if previous and any(previous["machine"].get(k) != here[k] for k in same):
      raise SystemExit(f"benchmark.py: {out} was measured on another machine or versions; "
                       "--only would mix them: rerun every figure (no --only)")
    rounds = 1 if args.quick else args.rounds
    shape = (256, 64, 1000) if args.quick else tuple(int(x) for x in args.fused_shape.split(","))
    measure = {
        "train_step": lambda: measure_train_step(args.quick, rounds),
        "whole_process": lambda: measure_whole_process(args.quick, rounds, args.torch_python),
        "sweep_throughput": lambda: measure_sweep(args.quick, 1 if args.quick else args.sweep_rounds),
        "seed_batching": lambda: measure_seed_batching(args.quick, 2 if args.quick else 5),
        "fused_loss": lambda: measure_fused(args.quick, 2 if args.quick else args.rounds, shape),
    }
    record = {"schema": 1, "command": _display([
                  os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                  else sys.executable, "scripts/benchmark.py", *(sys.argv[1:] if argv is None
                                                                 else argv)]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "quick": args.quick, "machine": here}
    for name in FIGURES:
      if name in args.only:
        figure_start = time.perf_counter()
        figures[name] = measure[name]()
        figures[name]["seconds_to_measure"] = time.perf_counter() - figure_start
        figures[name]["measured"] = {"command": record["command"], "date": record["date"],
                                     "load_average_at_start": here["load_average_at_start"]}
        print(f"{name}: {figures[name]['seconds_to_measure']:.0f} s", flush=True)
    record["figures"] = {name: figures[name] for name in FIGURES if name in figures}
    record["duration_s"] = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
  if docs is not None:
    docs.write_text(sync_docs(docs.read_text(), record))
    print(f"rewrote the benchmark blocks of {docs}")


if __name__ == "__main__":
  main()
