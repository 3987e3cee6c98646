"""Hostile inputs through the real command line: one line on stderr, non-zero exit, nothing lost."""
import json
import re
import random

import numpy as np
import pytest
import tensorflow_datasets as tfds

import launch

QUICK = ("--config=configs/mnist1d.py", "--config.batch_size=96", "--config.num_steps=4",
         "--config.log_every_steps=2", "--config.checkpoint_every_steps=2")


def assert_one_line_error(done, pattern: str = ""):
  said = launch.error_lines(done.stderr)
  assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
  assert len(said) == 1 and said[0].startswith("ls_jax: error: "), said
  assert "Traceback" not in done.stderr
  assert pattern in said[0], said[0]


@pytest.mark.parametrize("args,pattern", [
    (["--config=configs/nope.py"], "config file configs/nope.py does not exist"),
    (["--config=configs/common.py"], "does not define get_config()"),
    ([*QUICK, "--config.loss.smoothing=0.1"], "unknown config field 'loss.smoothing'"),
    ([*QUICK, "--config.loss.label_smoothing=abc"],
     "--config.loss.label_smoothing=abc: expected a number"),
    ([*QUICK, "--config.num_steps=abc"], "--config.num_steps=abc: expected an integer"),
    ([*QUICK, "--config.batch_size=9.5"], "--config.batch_size=9.5: expected an integer"),
    ([*QUICK, "--config.loss=0.1"], "--config.loss=0.1: expected a group of fields"),
    ([*QUICK, "--config.mixup.alpha=[1]"], "--config.mixup.alpha=[1]: expected a number"),
    ([*QUICK, "--print_config", "--config.loss.label_smoothing=1.5"],
     "loss.label_smoothing=1.5: must be in [-1, 1)"),
    ([*QUICK, "--config.loss.label_smoothing=1.5"], "loss.label_smoothing=1.5: must be in [-1, 1)"),
    ([*QUICK, "--config.batch_size=0"], "batch_size=0: must be a positive integer"),
    ([*QUICK, "--config.optimizer.decay_boundaries=x"],
     "optimizer.decay_boundaries=('x',): expected a tuple of numbers"),
    ([*QUICK, "--config.data.name=mnist", "--config.data.data_dir=/nonexistent/tfds"],
     "dataset 'mnist' is not prepared in data_dir /nonexistent/tfds"),
    ([*QUICK, "--config.data.train_split=train[:0]"], "train[:0]"),
    (["--config=configs/mnist1d.py:resnet"], "unknown variant 'resnet'"),
])
def test_hostile_inputs_fail_in_one_line(tmp_path, args, pattern):
  done = launch.run([*args, f"--workdir={tmp_path / 'run'}"])
  assert_one_line_error(done, pattern)


def test_batch_not_divisible_by_devices_is_one_line(tmp_path):
  done = launch.run([*QUICK, "--config.batch_size=100", f"--workdir={tmp_path}"], devices=8)
  assert_one_line_error(done, "batch_size=100: must be divisible by the 8 devices")


def test_corrupt_checkpoint_and_other_experiment_keep_the_run(tmp_path):
  workdir = tmp_path / "run"
  assert launch.run([*QUICK, f"--workdir={workdir}"]).returncode == 0
  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  other = launch.run([*QUICK, "--config.model.name=mlp", f"--workdir={workdir}"])
  assert_one_line_error(other, "holds a run with a different config (model.name")
  assert "--restart" in other.stderr
  # Corrupt the newest checkpoint's array data; resuming must refuse, naming the step directory.
  for f in (workdir / "checkpoints" / "4" / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(b"\x00garbage" * 8)
  (workdir / "results.json").unlink()
  corrupt = launch.run([*QUICK, f"--workdir={workdir}"])
  assert_one_line_error(corrupt, f"checkpoint {workdir / 'checkpoints' / '4'} cannot be restored")
  after = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  assert set(before) - {"results.json"} <= set(after)  # Nothing was deleted.


class BadLabels(tfds.core.GeneratorBasedBuilder):
  """A user dataset whose integer labels (no ClassLabel) include one outside [0, 10)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(40,), dtype=np.float32),
        "label": tfds.features.Tensor(shape=(), dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(), "test": self._generate_examples()}

  def _generate_examples(self):
    for i in range(200):
      yield i, {"image": np.zeros(40, np.float32), "label": 12 if i == 7 else i % 10}


def test_labels_outside_the_class_range_in_user_data(tmp_path):
  BadLabels(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  # The builder must be importable by the training process: register it from a config file.
  config = tmp_path / "bad_labels_config.py"
  config.write_text(
      "import sys\nsys.path.insert(0, %r)\nimport test_cli  # registers BadLabels\n"
      "from configs import mnist1d\n\ndef get_config():\n  c = mnist1d.get_config()\n"
      "  c.data.name = 'bad_labels'\n  c.data.data_dir = %r\n  c.batch_size = 96\n"
      "  c.num_steps = 2\n  return c\n" % (str(launch.REPO_ROOT / "tests"), str(tmp_path)))
  done = launch.run([f"--config={config}", f"--workdir={tmp_path / 'run'}"])
  assert_one_line_error(done, "split 'train[:90%]': labels at index (")
  assert "is 12, outside the valid range [0, 10)" in done.stderr


# Overrides drawn at random: real keys with wrong types or out-of-range values, and keys that
# do not exist. Either the run trains (exit 0) or it fails with one line; never a traceback.
_FIELDS = {
    "loss.label_smoothing": ["0.1", "-1", "1", "abc", "0.999", "nan"],
    "loss.confidence_penalty": ["0.5", "-0.5", "x"],
    "mixup.alpha": ["0.2", "-1", "[1]"],
    "cutmix.alpha": ["1.0", "inf", "-2"],
    "batch_size": ["48", "7", "-96", "0", "9.5", "True"],
    "num_steps": ["3", "0", "-1", "1e9x"],
    "optimizer.name": ["sgd", "adam", "rmsprop", "1"],
    "optimizer.learning_rate": ["0.01", "0", "-1", "fast"],
    "optimizer.schedule": ["cosine", "step", "linear"],
    "optimizer.warmup_steps": ["1", "100", "-3"],
    "data.label_noise.rate": ["0.2", "1.5", "-0.1"],
    "data.label_noise.kind": ["asymmetric", "pairwise"],
    "data.name": ["sklearn_digits", "no_such_dataset", ""],
    "model.name": ["mlp", "transformer", "resnet20"],
    "parallelism": ["pmap", "tpu"],
    "compute_dtype": ["bfloat16", "float8"],
    "nonfinite_loss": ["skip", "ignore"],
    "num_classes": ["10", "1", "ten"],
    "no_such_field": ["1"],
    "loss.no_such_field": ["1"],
}


@pytest.mark.parametrize("seed", range(10))
def test_fuzzed_overrides_run_or_fail_in_one_line(tmp_path, seed):
  rng = random.Random(seed)
  overrides = [f"--config.{key}={rng.choice(values)}"
               for key in rng.sample(sorted(_FIELDS), rng.randint(1, 3))
               for values in [_FIELDS[key]]]
  done = launch.run([*QUICK, *overrides, f"--workdir={tmp_path / 'run'}"])
  if done.returncode == 0:
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] > 0
  else:
    assert_one_line_error(done)


def test_config_path_after_a_space_and_print_config(tmp_path):
  done = launch.run(["--config", "configs/mnist1d.py:mlp", "--print_config",
                     "--config.loss.label_smoothing=0.2", "--workdir", str(tmp_path / "run")])
  assert done.returncode == 0, done.stderr[-2000:]
  assert "label_smoothing: 0.2" in done.stdout and "name: mlp" in done.stdout
  assert not (tmp_path / "run").exists()  # Printing the config trains nothing.
  # The same space form trains.
  done = launch.run(["--config", "configs/mnist1d.py", *QUICK[1:], "--workdir", str(tmp_path / "r")])
  assert done.returncode == 0 and (tmp_path / "r" / "results.json").exists(), done.stderr[-2000:]


def test_help_points_to_the_config_fields():
  done = launch.run(["--help"])
  assert done.returncode == 0
  assert "--print_config" in done.stdout and "configs/default.py" in done.stdout


@pytest.mark.parametrize("body,pattern", [
    ('  c.mixup.alpha = "0.2"', r"line 4 \(`c.mixup.alpha = \"0.2\"`\): TypeError: .*'alpha'"),
    ("  c.mixup.alpha = undefined_name",
     r"line 4 \(`c.mixup.alpha = undefined_name`\): NameError: name 'undefined_name'"),
])
def test_errors_inside_a_config_file_name_the_file_and_line(tmp_path, body, pattern):
  config_file = tmp_path / "my_config.py"
  config_file.write_text("from configs import mnist1d\ndef get_config():\n"
                         f"  c = mnist1d.get_config()\n{body}\n  return c\n")
  done = launch.run([f"--config={config_file}", f"--workdir={tmp_path / 'run'}"])
  assert_one_line_error(done, f"config file {config_file}")
  assert re.search(pattern, done.stderr), done.stderr


def test_a_misspelt_flag_suggests_it():
  done = launch.run(["--config=configs/mnist1d.py:runlcoal", "--workdir=/tmp/unused"])
  assert_one_line_error(done, "did you mean 'runlocal'?")
  assert "variants: cnn, mlp; flags: runlocal" in done.stderr


def test_a_missing_dataset_is_the_only_line_on_stderr(tmp_path):
  done = launch.run([*QUICK, "--config.data.name=mnist", "--config.data.data_dir=/nonexistent",
                     f"--workdir={tmp_path}"])
  assert done.returncode == 2
  assert done.stderr.strip().count("\n") == 0, done.stderr  # Not even a TFDS warning before it.


def test_print_config_validates_like_training(tmp_path):
  config_file = tmp_path / "typo.py"
  config_file.write_text("from configs import mnist1d\ndef get_config():\n"
                         "  c = mnist1d.get_config()\n  c.loss.smothing = 0.1\n  return c\n")
  done = launch.run([f"--config={config_file}", "--print_config"])
  assert_one_line_error(done, "unknown config field 'loss.smothing'")
  assert not done.stdout


@pytest.mark.parametrize("num_steps", [1, 5, 100])
def test_short_language_model_runs_resolve_a_warmup_below_num_steps(num_steps):
  """The warm-up follows num_steps (a FieldReference), so no short run fails on a field the user
  never set; the default runs keep their warm-up."""
  from ls_jax.trainer import config_checks, default_config
  from configs import lm_pydoc, lm_tiny_shakespeare
  for module, arg, default_warmup in ((lm_pydoc, "", 100), (lm_pydoc, "runlocal", 10),
                                      (lm_tiny_shakespeare, "", 200),
                                      (lm_tiny_shakespeare, "runlocal", 10)):
    config = module.get_config(arg)
    assert config.optimizer.warmup_steps == default_warmup
    config.num_steps = num_steps
    assert 0 <= config.optimizer.warmup_steps < num_steps
    config_checks.validate(config, reference=default_config.get_config(), device_count=1)
    config.optimizer.warmup_steps = 0  # An explicit value still wins.
    config.num_steps = 600
    assert config.optimizer.warmup_steps == 0


def test_lm_pydoc_short_run_from_the_command_line():
  done = launch.run(["--config=configs/lm_pydoc.py", "--config.num_steps=100", "--print_config"])
  assert done.returncode == 0, done.stderr[-2000:]
  assert "warmup_steps: 16" in done.stdout

