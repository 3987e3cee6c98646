"""The training loop against its specification, observed from inside the compiled step.

`train.train_and_evaluate` is run as a user runs it; a wrapper around `train.train_step` (the
function the loop compiles) and around the task's `prepare` records, through `jax.debug.callback`,
which examples each step trained on and which randomness it drew. Both are compared with what the
loop promises (`ls_jax.trainer.train`'s docstring):

* step s (0-based) trains on `input_pipeline.global_batch_indices(s, ...)` of the training split,
  across an epoch boundary and across a resume;
* step s draws from `fold_in(key(seed), s)`: its Mixup weights are those of that key, and differ
  from step to step;
* a resumed run ends bit for bit where the uninterrupted one does, under `jit` (device-resident
  batches) and under `pmap` (host-fed batches, 8 devices).
"""
import shutil

import jax
import numpy as np

from configs import mnist1d
from ls_jax import mixing
from ls_jax.trainer import checkpointing, input_pipeline, tasks, train

NUM_STEPS = 12  # MNIST-1D's 3600 training examples in batches of 384: 9 steps per epoch.
BATCH = 384
RESUME_FROM = 6
SEED = 3
ALPHA = 0.4


def _config(parallelism: str):
  config = mnist1d.get_config()
  config.seed = SEED
  config.batch_size = BATCH
  config.num_steps = NUM_STEPS
  config.log_every_steps = 4
  config.checkpoint_every_steps = RESUME_FROM
  config.eval_every_steps = 0
  config.mixup.alpha = ALPHA
  config.parallelism = parallelism
  return config


class Recorder:
  """What each executed step saw: its step number and raw batch, and the key and soft targets its
  task's `prepare` got and made. Under pmap, each device reports its shard."""

  def __init__(self, monkeypatch):
    self.batches, self.draws = [], []
    original_step, original_prepare = train.train_step, tasks.Classification.prepare

    def train_step(state, metric_sums, batch, base_rng, *args, **kwargs):
      jax.debug.callback(lambda step, images: self.batches.append((int(step), np.array(images))),
                         state.step, batch["image"])
      return original_step(state, metric_sums, batch, base_rng, *args, **kwargs)

    def prepare(task, rng, batch, config):
      inputs, targets = original_prepare(task, rng, batch, config)
      jax.debug.callback(lambda key, t: self.draws.append((np.array(key), np.array(t))),
                         jax.random.key_data(rng), targets)
      return inputs, targets

    monkeypatch.setattr(train, "train_step", train_step)
    monkeypatch.setattr(tasks.Classification, "prepare", prepare)

  def steps(self) -> dict[int, np.ndarray]:
    """Step -> the global batch's images (the devices' shards in device order under pmap)."""
    by_step: dict[int, list[np.ndarray]] = {}
    for step, images in self.batches:
      by_step.setdefault(step, []).append(images)
    return {s: np.concatenate(parts) for s, parts in by_step.items()}


def _train_resume_and_record(tmp_path, monkeypatch, parallelism: str, devices, *,
                             record_resume: bool = True):
  """The uninterrupted run, and the same run resumed from its step-6 checkpoint (later
  checkpoints and results removed, as if killed after step 6 was saved). Without
  `record_resume`, the resumed run is the loop as shipped (its compilation can be cached)."""
  full = tmp_path / "full"
  recorder = Recorder(monkeypatch)
  train.train_and_evaluate(_config(parallelism), str(full), devices=devices)
  jax.effects_barrier()
  first = (recorder.steps(), list(recorder.draws))
  resumed = tmp_path / "resumed"
  shutil.copytree(full, resumed)
  for step_dir in (resumed / "checkpoints").iterdir():
    if step_dir.name.isdigit() and int(step_dir.name) > RESUME_FROM:
      shutil.rmtree(step_dir)
  (resumed / "results.json").unlink()
  recorder.batches.clear()
  recorder.draws.clear()
  if not record_resume:
    monkeypatch.undo()
  train.train_and_evaluate(_config(parallelism), str(resumed), devices=devices)
  jax.effects_barrier()
  second = (recorder.steps(), list(recorder.draws))
  return first, second, full, resumed


def _row_index(split) -> dict[bytes, int]:
  index = {row.tobytes(): i for i, row in enumerate(split.images)}
  assert len(index) == len(split), "training examples must be distinct to be identified"
  return index


def _assert_batches_follow_the_specification(steps: dict[int, np.ndarray], expected_steps,
                                             split, *, ordered: bool):
  assert sorted(steps) == list(expected_steps)
  index = _row_index(split)
  for step, images in steps.items():
    seen = np.array([index[row.tobytes()] for row in images])
    expected = input_pipeline.global_batch_indices(step, num_examples=len(split), batch_size=BATCH,
                                                   seed=SEED)
    if not ordered:  # pmap: the devices' shards may report in any order.
      seen, expected = np.sort(seen), np.sort(expected)
    np.testing.assert_array_equal(seen, expected, err_msg=f"step {step}")
  # Independently of `global_batch_indices` (a bug shared by it and the feeds would pass the
  # above): within an epoch no example repeats, and the epochs draw different orders.
  steps_per_epoch = len(split) // BATCH
  epochs = {}
  for step, images in steps.items():
    epochs.setdefault(step // steps_per_epoch, []).extend(index[row.tobytes()] for row in images)
  for epoch, seen in epochs.items():
    assert len(set(seen)) == len(seen), f"an example repeats within epoch {epoch}"
  if len(epochs) > 1 and all(step in steps for step in (0, steps_per_epoch)):
    assert not np.array_equal(steps[0], steps[steps_per_epoch]), "epoch 1 replays epoch 0's order"


def _assert_final_states_equal(full, resumed):
  a = checkpointing.read_state_arrays(full / "checkpoints" / str(NUM_STEPS))
  b = checkpointing.read_state_arrays(resumed / "checkpoints" / str(NUM_STEPS))
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _split():
  config = _config("jit")
  return input_pipeline.load_dataset(config.data, num_classes=10, seed=SEED).train


def test_jit_loop_trains_on_the_specified_batches_and_keys_across_an_epoch_and_a_resume(
    tmp_path, monkeypatch):
  split = _split()
  assert len(split) // BATCH < NUM_STEPS  # The run crosses an epoch boundary ...
  assert RESUME_FROM < len(split) // BATCH  # ... after the resume.
  (steps, draws), (resumed_steps, resumed_draws), full, resumed = _train_resume_and_record(
      tmp_path, monkeypatch, "jit", jax.devices()[:1])
  _assert_batches_follow_the_specification(steps, range(NUM_STEPS), split, ordered=True)
  _assert_batches_follow_the_specification(resumed_steps, range(RESUME_FROM, NUM_STEPS), split,
                                           ordered=True)
  # Randomness: step s uses fold_in(key(seed), s), in the uninterrupted and the resumed run.
  assert len(draws) == NUM_STEPS and len(resumed_draws) == NUM_STEPS - RESUME_FROM
  for step, (key, _) in enumerate(draws):
    np.testing.assert_array_equal(
        key, jax.random.key_data(jax.random.fold_in(jax.random.key(SEED), step)),
        err_msg=f"step {step}")
  for (key, targets), (resumed_key, resumed_targets) in zip(draws[RESUME_FROM:], resumed_draws):
    np.testing.assert_array_equal(key, resumed_key)
    np.testing.assert_array_equal(targets, resumed_targets)
  # Each step mixes with its own weight: the largest target of each step's first example is
  # max(lam, 1 - lam) of that step's Beta draw (or 1 if paired with its own class).
  lams = []
  for step, (_, targets) in enumerate(draws[:8]):
    rng = jax.random.split(jax.random.fold_in(jax.random.key(SEED), step))[1]  # As `prepare`.
    images = input_pipeline.normalize(steps[step], "mnist1d", np.float32)
    labels = split.labels[input_pipeline.global_batch_indices(step, num_examples=len(split),
                                                             batch_size=BATCH, seed=SEED)]
    _, expected, lam = mixing.mixup(rng, images, labels, 10, ALPHA)
    np.testing.assert_allclose(targets, expected, atol=1e-6, err_msg=f"step {step}")
    lams.append(float(lam))
  assert len(set(lams)) == len(lams), lams
  _assert_final_states_equal(full, resumed)


def test_pmap_host_fed_loop_trains_the_specified_batches_and_resumes_bit_identically(
    tmp_path, monkeypatch):
  assert jax.device_count() == 8, "conftest.py should give 8 host CPU devices"
  split = _split()
  (steps, draws), _, full, resumed = _train_resume_and_record(
      tmp_path, monkeypatch, "pmap", jax.devices(), record_resume=False)
  _assert_batches_follow_the_specification(steps, range(NUM_STEPS), split, ordered=False)
  assert len(draws) == 8 * NUM_STEPS  # Every device draws the step's key.
  expected_keys = {jax.random.key_data(jax.random.fold_in(jax.random.key(SEED), s)).tobytes()
                   for s in range(NUM_STEPS)}
  assert {key.tobytes() for key, _ in draws} == expected_keys
  _assert_final_states_equal(full, resumed)
