"""The next-token language model in the trainer: data, tokenizer, fused loss in the step,
per-token evaluation, training and resume, on the embedded `pydoc_text` corpus."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from configs import lm_pydoc
from ls_jax.trainer import embedded_datasets, input_pipeline, tokenizer, train
from ls_jax.trainer import parallel
from ls_jax.trainer import state as state_lib
from ls_jax.trainer import tasks
from ls_jax.trainer import language_model
from ls_jax import losses


def tiny_config(**overrides):
  """A 1-layer, 32-wide model on 32-token windows: seconds per run on 2 CPU cores."""
  config = lm_pydoc.get_config("runlocal")
  config.update_from_flattened_dict({
      "data.seq_len": 32, "lm.num_layers": 1, "lm.num_heads": 2, "lm.embed_dim": 32,
      "lm.mlp_dim": 64, "batch_size": 16, "eval_batch_size": 32, "num_steps": 40,
      "log_every_steps": 10, "eval_every_steps": 0, "checkpoint_every_steps": 20,
      "optimizer.warmup_steps": 5, **overrides})
  return config


# ------------------------------------------------------------------------------------------------
# Tokenizer and data.


def test_vocabulary_is_ranked_by_count_then_alphabetically():
  words = tokenizer.split_words("b a, A c b? a")
  assert words == ["b", "a", ",", "a", "c", "b", "?", "a"]
  vocabulary = tokenizer.build_vocabulary(words, 6)
  assert vocabulary == ["<pad>", "<eos>", "<unk>", "a", "b", ","]  # ',' '?' 'c' tie: ',' first.
  # Deterministic: a function of the counts, not of the order the words come in.
  assert tokenizer.build_vocabulary(words[::-1], 6) == vocabulary
  with pytest.raises(ValueError, match="vocabulary size must be > 3, got 3"):
    tokenizer.build_vocabulary(words, 3)


def test_tokenizer_round_trips_and_maps_unknown_words_to_unk():
  words = embedded_datasets.pydoc_words()
  tok = tokenizer.Tokenizer(tokenizer.build_vocabulary(words[:int(0.8 * len(words))], 2048))
  text = "The return value of a function is None."
  assert tok.decode(tok.encode(text)) == tokenizer.split_words(text)
  # The seed example is in the vocabulary ("hello" is in 4 examples of the training text).
  assert tok.decode(tok.encode("Hello, how are")) == ["hello", ",", "how", "are"]
  assert tok.decode(tok.encode("zyzzyva how")) == ["<unk>", "how"]


def test_windows_cover_each_token_once_as_a_target_and_pad_the_last():
  stream = np.arange(1, 11, dtype=np.int32)  # 10 tokens, windows of 4 at stride 3.
  windows = tokenizer.token_windows(stream, 4)
  np.testing.assert_array_equal(windows, [[1, 2, 3, 4], [4, 5, 6, 7], [7, 8, 9, 10]])
  windows = tokenizer.token_windows(stream[:9], 4)
  np.testing.assert_array_equal(windows[-1], [7, 8, 9, 0])
  targets = windows[:, 1:][windows[:, 1:] != 0]
  np.testing.assert_array_equal(np.sort(targets), stream[1:9])


def test_pydoc_dataset_is_the_tokenized_contiguous_blocks_with_the_train_vocabulary():
  config = tiny_config(**{"data.seq_len": 64})
  dataset = input_pipeline.load_dataset(config.data, num_classes=2048, seed=0)
  words = embedded_datasets.pydoc_words()
  bounds = [int(f * len(words)) for f in (0.0, 0.8, 0.9, 1.0)]
  assert dataset.vocabulary == tokenizer.build_vocabulary(words[:bounds[1]], 2048)
  tok = tokenizer.Tokenizer(dataset.vocabulary)
  ids = np.asarray([tok.encode(w)[0] if w != "<eos>" else tokenizer.EOS_ID for w in words])
  for split, lo, hi in zip((dataset.train, dataset.validation, dataset.test), bounds, bounds[1:]):
    expected = tokenizer.token_windows(ids[lo:hi].astype(np.int32), 65)
    # TFDS stores the windows in its own order: compare as sets of rows.
    got = np.concatenate([split.images, split.labels[:, -1:]], axis=1)
    np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])],
                                  expected[np.lexsort(expected.T[::-1])])
    np.testing.assert_array_equal(split.images[:, 1:], split.labels[:, :-1])


# ------------------------------------------------------------------------------------------------
# The loss in the step.


def _model_and_params(config, seed=0):
  model = train.get_model(config, tasks.task_for(config))
  state = state_lib.create_train_state(jax.random.key(seed), model, (config.data.seq_len,),
                                   state_lib.make_optimizer(config.optimizer, config.num_steps),
                                   input_dtype=jnp.int32)
  return model, state


def _materialized_loss(model, params, tokens, labels, label_smoothing, z_loss):
  """The loss the fused step must equal, from `(tokens, V)` logits and `smoothed_cross_entropy`."""
  variables = {"params": params}
  hidden = model.apply(variables, tokens, where=tokens != 0)
  logits = hidden @ model.apply(variables, method="output_kernel")
  where = labels != 0
  per_token = losses.smoothed_cross_entropy(logits, labels, label_smoothing, where=where)
  per_token += z_loss * jnp.where(where, jax.nn.logsumexp(logits, -1) ** 2, 0)
  return per_token.sum() / where.sum()


@pytest.mark.parametrize("tie_embedding", [True, False])
def test_step_loss_is_the_materialized_smoothed_cross_entropy_of_the_first_batch(tie_embedding):
  config = tiny_config(**{"loss.label_smoothing": 0.1, "lm.z_loss": 1e-3,
                          "lm.tie_embedding": tie_embedding, "lm.chunk_size": 300})
  model, state = _model_and_params(config)
  parallelism = parallel.Parallelism("jit", parallel.data_mesh(jax.devices()[:2]))
  split = input_pipeline.load_dataset(config.data, num_classes=2048, seed=0).train
  batch = split.local_batch(input_pipeline.global_batch_indices(
      0, num_examples=len(split), batch_size=config.batch_size, seed=config.seed))
  expected, grad = jax.value_and_grad(lambda p: _materialized_loss(
      model, p, batch["image"], batch["label"], 0.1, 1e-3))(state.params)
  expected_grad_norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad))))
  step = train.compile_train_step(parallelism, model, config, resident_data=True)
  feed = parallel.ResidentFeed(split, config, parallelism)
  _, sums = step(parallelism.to_device(state), parallelism.new_metric_sums(
      tasks.task_for(config).step_metric_names), *feed(0), jax.random.key(0), None)
  assert set(sums) == {"loss", "grad_norm"}  # No (tokens, V) softmax for accuracy in the step.
  metrics = parallelism.read_metric_sums(sums)
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["grad_norm"], expected_grad_norm, rtol=1e-4)


def test_padding_is_masked_a_padded_sequence_has_the_loss_of_its_prefix():
  config = tiny_config(**{"loss.label_smoothing": 0.1})
  model, state = _model_and_params(config)
  variables = {"params": state.params}
  rng = np.random.default_rng(0)
  sequence = rng.integers(3, 2048, 33).astype(np.int32)
  tokens, labels = sequence[None, :-1], sequence[None, 1:]
  length = 20  # Real targets; the rest is padding, tokens and targets.
  padded_tokens, padded_labels = tokens.copy(), labels.copy()
  padded_tokens[:, length + 1:] = 0
  padded_labels[:, length:] = 0
  padded = language_model.next_token_loss(model, variables, padded_tokens, padded_labels, config)
  prefix = language_model.next_token_loss(model, variables, tokens[:, :length], labels[:, :length], config)
  np.testing.assert_allclose(padded, prefix, rtol=1e-6)
  # Whatever the padded positions hold as inputs, the loss does not change.
  garbage = padded_tokens.copy()
  garbage[:, length + 1:] = rng.integers(3, 2048, 32 - length - 1)
  np.testing.assert_allclose(language_model.next_token_loss(model, variables, garbage, padded_labels,
                                                   config), prefix, rtol=1e-6)


@pytest.mark.parametrize("tie_embedding", [True, False])
def test_step_gradients_through_the_model_vjp_equal_autodiff_of_the_loss(tie_embedding):
  """The step's `loss_and_grads` (the fused loss's own gradients, pulled back through the model's
  vjp) against `jax.value_and_grad` of `next_token_loss`, on a batch with padding."""
  config = tiny_config(**{"loss.label_smoothing": 0.1, "lm.z_loss": 1e-3,
                          "lm.tie_embedding": tie_embedding, "lm.chunk_size": 300})
  model, state = _model_and_params(config)
  rng = np.random.default_rng(1)
  sequences = rng.integers(3, 2048, (4, 33)).astype(np.int32)
  tokens, labels = sequences[:, :-1].copy(), sequences[:, 1:].copy()
  tokens[1, 20:], labels[1, 19:] = 0, 0  # A padded sequence.
  task = tasks.task_for(config)
  (loss, aux), grads = jax.jit(lambda variables: task.loss_and_grads(
      model, variables, tokens, labels, None, config, teacher_logits=None, vocab_mesh=None,
      has_batch_stats=False))({"params": state.params})
  assert aux == (None, None)
  expected_loss, expected_grads = jax.jit(jax.value_and_grad(lambda params: (
      language_model.next_token_loss(model, {"params": params}, tokens, labels, config))))(
          state.params)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  assert jax.tree.structure(grads) == jax.tree.structure(expected_grads)
  # Float rounding only: within 1e-5 of the largest gradient entry (some entries are 0 in exact
  # arithmetic and ~1e-11 in float32, in either order of the sums).
  scale = max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(expected_grads))
  jax.tree.map(lambda grad, expected: np.testing.assert_allclose(
      grad, expected, rtol=1e-4, atol=1e-5 * scale), grads, expected_grads)


# ------------------------------------------------------------------------------------------------
# Evaluation.


def test_token_metrics_match_a_float64_numpy_computation():
  config = tiny_config()
  model, state = _model_and_params(config, seed=3)
  variables = {"params": state.params}
  rng = np.random.default_rng(1)
  tokens = rng.integers(3, 2048, (4, 32)).astype(np.int32)
  labels = rng.integers(3, 2048, (4, 32)).astype(np.int32)
  labels[1, 25:] = 0  # Padding is left out of every metric.
  tokens[1, 26:] = 0
  outputs = jax.device_get(language_model.next_token_outputs(model, variables, tokens, labels))
  metrics = language_model.token_metrics(language_model.next_tokens({**outputs, "label": labels}))

  hidden = np.asarray(model.apply(variables, tokens, where=tokens != 0), np.float64)
  logits = hidden @ np.asarray(model.apply(variables, method="output_kernel"), np.float64)
  keep = labels != 0
  logits, targets = logits[keep], labels[keep]
  probs = special.softmax(logits, -1)
  confidence, correct = probs.max(-1), probs.argmax(-1) == targets
  nll = -np.log(probs[np.arange(len(targets)), targets])
  ece = 0.0
  for lo in np.arange(15) / 15:
    in_bin = (confidence > lo) & (confidence <= lo + 1 / 15)
    if in_bin.any():
      ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
  assert metrics["tokens"] == keep.sum() == 4 * 32 - 7
  assert metrics["accuracy"] == correct.mean()
  np.testing.assert_allclose(metrics["nll"], nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["perplexity"], np.exp(nll.mean()), rtol=1e-5)
  np.testing.assert_allclose(metrics["mean_confidence"], confidence.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["ece"], ece, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(metrics["entropy"], -(probs * np.log(probs)).sum(-1).mean(),
                             rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Training, results and resume.


def test_lm_trains_its_loss_falls_and_results_hold_per_token_metrics(tmp_path):
  results = train.train_and_evaluate(tiny_config(), str(tmp_path), devices=jax.devices()[:2])
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses_by_step = {l["step"]: l["loss"] for l in lines if "loss" in l}
  assert list(losses_by_step) == [10, 20, 30, 40]
  assert losses_by_step[10] > np.log(2048) * 0.8  # Near log V: near the uniform prediction.
  assert losses_by_step[40] < losses_by_step[10] - 1.0
  on_disk = json.loads((tmp_path / "results.json").read_text())
  for split in (on_disk, on_disk["validation"]):
    for key in ("accuracy", "nll", "perplexity", "ece", "mean_confidence", "entropy", "tokens"):
      assert key in split, key
    np.testing.assert_allclose(split["perplexity"], np.exp(split["nll"]))
    assert 0.05 < split["accuracy"] < 1 and split["perplexity"] < 2048
  predictions = np.load(tmp_path / "predictions.npz")
  assert predictions["test_nll"].shape == (results["tokens"],)  # Per token, not (tokens, V).
  assert results["tokens"] == np.count_nonzero(
      input_pipeline.load_dataset(tiny_config().data, num_classes=2048, seed=0).test.labels)
  np.testing.assert_allclose(predictions["test_nll"].mean(), results["nll"], rtol=1e-6)
  assert predictions["test_correct"].mean() == results["accuracy"]

  # scripts/next_word.py on this run: a distribution over the vocabulary after the prompt.
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "next_word.py"
  spec = importlib.util.spec_from_file_location("next_word", path)
  next_word = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(next_word)
  method, read, probabilities, vocabulary = next_word.next_word_probabilities(
      tmp_path, ["Hello, how are", "zyzzyva"])
  assert method == "CE" and read == ["hello , how are", "<unk>"] and len(vocabulary) == 2048
  assert probabilities.shape == (2, 2048)
  np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
  assert next_word.main([str(tmp_path), "--prompt", "the value of"]) == 0


@pytest.mark.parametrize("model_axis_size", [1, 2])
def test_an_interrupted_lm_run_resumes_bit_identically(tmp_path, model_axis_size):
  devices = jax.devices()[:model_axis_size]
  config = tiny_config(num_steps=20, checkpoint_every_steps=10, model_axis_size=model_axis_size,
                       **{"loss.label_smoothing": 0.1})
  train.train_and_evaluate(config, str(tmp_path / "reference"), devices=devices)
  victim = tmp_path / "victim"
  train.train_and_evaluate(config, str(victim), devices=devices)
  shutil.rmtree(victim / "checkpoints" / "20")  # As if stopped after the step-10 checkpoint.
  (victim / "results.json").unlink()
  resumed = train.train_and_evaluate(config, str(victim), devices=devices)
  assert resumed["steps"] == 20
  import launch
  launch.assert_trees_equal(launch.final_params(tmp_path / "reference"),
                            launch.final_params(victim))


def test_the_vocabulary_is_split_over_the_model_axis_and_training_matches_one_device(tmp_path):
  config = tiny_config(num_steps=10, **{"loss.label_smoothing": 0.1, "lm.z_loss": 1e-3})
  one = train.train_and_evaluate(config, str(tmp_path / "one"), devices=jax.devices()[:1])
  config.model_axis_size = 2
  mesh = train.train_and_evaluate(config, str(tmp_path / "mesh"))  # 4 (data) x 2 (model).
  import launch
  # atol: Adam normalizes gradients that are 0 up to float32 rounding (which depends on the order
  # of the sums, so on the mesh) into steps of ~1e-6 here, on parameters that barely move.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               launch.final_params(tmp_path / "one"), launch.final_params(tmp_path / "mesh"))
  np.testing.assert_allclose(mesh["nll"], one["nll"], rtol=1e-5)
  # Where the vocabulary-sized arrays live: split over `model` along V, moments included.
  parallelism = parallel.Parallelism("jit", parallel.data_mesh(jax.devices(), 2))
  state = jax.eval_shape(lambda: _model_and_params(config)[1])
  sharding = parallelism.state_sharding(state)
  spec = jax.sharding.PartitionSpec
  assert sharding.params["token_embed"]["embedding"].spec == spec("model", None)
  adam = sharding.opt_state[-1][0]
  assert adam.mu["token_embed"]["embedding"].spec == spec("model", None)
  assert adam.nu["position_embedding"].spec == spec()


def test_a_classifier_on_token_data_is_a_one_line_error(tmp_path):
  from ls_jax.trainer.errors import UserError
  config = tiny_config(**{"model.name": "mlp"})
  with pytest.raises(UserError, match=r"model.name='mlp' does not fit dataset 'pydoc_text'"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize("overrides,message", [
    ({"mixup.alpha": 0.2}, r"mixup.alpha=0.2: must be 0.0 for a language model"),
    ({"loss.label_smoothing": -1.5}, r"loss.label_smoothing=-1.5: must be in \[-1, 1\)"),
    ({"model_axis_size": 3}, r"model_axis_size=3: must be a positive integer that divides the 8"),
    ({"model_axis_size": 2, "model.name": "mlp"}, r"model_axis_size=2: a model axis splits"),
    ({"lm.embed_dim": 31}, r"lm.embed_dim=31: must be divisible by lm.num_heads=2"),
    ({"data.seq_len": 80}, r"config.data.seq_len=80: dataset 'pydoc_text' has windows of 65"),
])
def test_bad_lm_config_values_are_one_line_errors(tmp_path, overrides, message):
  from ls_jax.trainer.errors import UserError
  with pytest.raises(UserError, match=message) as error:
    train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
  assert "\n" not in str(error.value)
