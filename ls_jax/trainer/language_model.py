"""Next-token language modelling: the task the loop runs when `config.model.name` is one of
`models.LANGUAGE_MODELS`.

The model returns hidden states, and its output layer is fused into the loss, so the (tokens,
vocabulary) logits are never built in the step: the step's loss and gradients come from
`losses.linear_smoothed_cross_entropy_and_grads` through the model's vjp (`loss_and_grads`), or,
with the vocabulary split over a mesh, from autodiff of
`losses.vocab_parallel_linear_smoothed_cross_entropy`. Evaluation computes per-token metrics one
batch at a time (`next_token_outputs`). A batch holds input tokens as "image" and the next tokens
as "label", both `[batch, seq_len]`.
"""
import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ls_jax import calibration
from ls_jax import losses
from ls_jax.trainer import tokenizer
from ls_jax.trainer.evaluation import bins_json


class LanguageModel:
  """The task interface of `ls_jax.trainer.tasks.Classification`, for next-token prediction."""
  # The step never has the logits: token accuracy and confidence come from evaluation.
  step_metric_names = ("loss", "grad_norm")
  validation_metric_names = ("accuracy", "nll", "ece", "mean_confidence", "perplexity", "entropy")
  input_dtype = jnp.int32

  def model_kwargs(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
    lm = config.lm
    return dict(num_layers=lm.num_layers, num_heads=lm.num_heads, embed_dim=lm.embed_dim,
                mlp_dim=lm.mlp_dim, max_len=config.data.seq_len, tie_embedding=lm.tie_embedding)

  def prepare(self, rng: jax.Array, batch: dict[str, jax.Array],
              config: ml_collections.ConfigDict) -> tuple[jax.Array, None]:
    del rng, config  # Tokens are neither normalized, augmented nor mixed.
    return batch["image"], None

  def loss_and_grads(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
                     labels: jax.Array, targets: None, config: ml_collections.ConfigDict, *,
                     teacher_logits: None, vocab_mesh: Optional[jax.sharding.Mesh],
                     has_batch_stats: bool) -> tuple[tuple[jax.Array, tuple[None, None]], Any]:
    """`((loss, (None, None)), grads)`: the mean next-token loss and its gradient w.r.t.
    `variables["params"]`, which the train step applies. The output layer's gradients come from
    the loss's own pass (`next_token_loss_and_grads`), or, with `vocab_mesh`, from autodiff of
    `next_token_loss`."""
    del targets, teacher_logits, has_batch_stats  # Validation rules out mixing and teachers.
    if vocab_mesh is not None:
      loss, grads = jax.value_and_grad(lambda params: next_token_loss(
          model, {**variables, "params": params}, inputs, labels, config, vocab_mesh))(
              variables["params"])
    else:
      loss, grads = next_token_loss_and_grads(model, variables, inputs, labels, config)
    return (loss, (None, None)), grads

  def step_metrics(self, logits: None, labels: jax.Array) -> dict[str, jax.Array]:
    del logits, labels
    return {}

  def eval_outputs(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
                   labels: jax.Array, config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    del config
    return next_token_outputs(model, variables, inputs, labels)

  def split_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    return token_metrics(next_tokens(outputs))

  def final_results(self, val_outputs: dict[str, np.ndarray], test_outputs: dict[str, np.ndarray]
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-token metrics of both splits; the predictions are per next token (padding dropped):
    `{val,test}_{confidence,correct,nll,entropy,labels}`, not logits (a split's logits are
    tokens x V floats). No temperature scaling."""
    val_tokens, test_tokens = next_tokens(val_outputs), next_tokens(test_outputs)
    results = {**token_metrics(test_tokens), "validation": token_metrics(val_tokens),
               "reliability": bins_json(calibration.confidence_reliability_bins(
                   test_tokens["confidence"], test_tokens["correct"]))}
    predictions = {f"{split}_{'labels' if name == 'label' else name}": x
                   for split, tokens in (("val", val_tokens), ("test", test_tokens))
                   for name, x in tokens.items()}
    return results, predictions

  def summary_line(self, results: dict[str, Any], config: ml_collections.ConfigDict, method: str,
                   workdir: str) -> str:
    """A README-table row of per-token metrics."""
    return ("| dataset | model | method | steps | token acc | perplexity | ECE | mean conf "
            "| entropy | train s |\n|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {config.data.name} | {config.model.name} | {method} | {results['steps']} "
            f"| {results['accuracy']:.4f} | {results['perplexity']:.2f} | {results['ece']:.4f} "
            f"| {results['mean_confidence']:.4f} | {results['entropy']:.3f} "
            f"| {results['train_seconds']:.1f} |\n(full results: {workdir}/results.json)")


def check_config(fields: dict[str, Any], check: Callable[[str, bool, str], None]) -> None:
  """What config validation adds for a language model (the method table checks the methods):
  `check(field, ok, requirement)` on the flattened `fields`."""
  # The next-token loss is smoothed CE (+ z-loss) over the vocabulary, nothing else yet.
  for name, off in (("data.label_noise.rate", 0.0), ("data.augment", "none"),
                    ("data.in_memory", True), ("parallelism", "jit")):
    check(name, fields[name] == off, f"must be {off!r} for a language model "
          f"(model.name={fields['model.name']!r})")


def next_token_loss(model: flax.linen.Module, variables: dict[str, Any], tokens: jax.Array,
                    labels: jax.Array, config: ml_collections.ConfigDict,
                    vocab_mesh: Optional[jax.sharding.Mesh] = None) -> jax.Array:
  """Mean label-smoothed CE (+ z-loss) of the next tokens `labels` over the non-padding ones.

  The output layer is applied inside `losses.linear_smoothed_cross_entropy`, chunk by chunk over
  the vocabulary, so no `(tokens, V)` logits exist in the forward or the backward pass. With
  `vocab_mesh`, `losses.vocab_parallel_linear_smoothed_cross_entropy` splits V over its `model`
  axis and the tokens over `data`.
  """
  hidden = model.apply(variables, tokens, where=tokens != tokenizer.PAD_ID, train=True)
  kernel = model.apply(variables, method="output_kernel")
  where = labels != tokenizer.PAD_ID
  loss_fn = losses.linear_smoothed_cross_entropy
  if vocab_mesh is not None:
    loss_fn = functools.partial(losses.vocab_parallel_linear_smoothed_cross_entropy,
                                mesh=vocab_mesh)
  per_token = loss_fn(hidden, kernel, labels, config.loss.label_smoothing, where=where,
                      z_loss=config.lm.z_loss, chunk_size=config.lm.chunk_size)
  return per_token.sum() / jnp.maximum(where.sum(), 1)


def next_token_loss_and_grads(model: flax.linen.Module, variables: dict[str, Any],
                              tokens: jax.Array, labels: jax.Array,
                              config: ml_collections.ConfigDict) -> tuple[jax.Array, Any]:
  """`next_token_loss` and its gradient w.r.t. `variables["params"]`, the output layer's from
  `losses.linear_smoothed_cross_entropy_and_grads`.

  `jax.vjp` of the model gives the hidden states and the output kernel with their pullback; the
  loss computes `d hidden` and `d kernel` in the same pass as its value (three matrix products
  with the kernel instead of the four of differentiating `linear_smoothed_cross_entropy`, and no
  kernel-sized residual), and the pullback carries them into the parameters; with a tied
  embedding it adds `d kernel.T` to the embedding's gradient.
  """
  def hidden_and_kernel(params):
    params_variables = {**variables, "params": params}
    return (model.apply(params_variables, tokens, where=tokens != tokenizer.PAD_ID, train=True),
            model.apply(params_variables, method="output_kernel"))

  (hidden, kernel), pullback = jax.vjp(hidden_and_kernel, variables["params"])
  loss, output_grads = losses.linear_smoothed_cross_entropy_and_grads(
      hidden, kernel, labels, config.loss.label_smoothing, where=labels != tokenizer.PAD_ID,
      z_loss=config.lm.z_loss, chunk_size=config.lm.chunk_size)
  grads, = pullback(output_grads)
  return loss, grads


def next_token_outputs(model: flax.linen.Module, variables: dict[str, Any], tokens: jax.Array,
                       labels: jax.Array) -> dict[str, jax.Array]:
  """Per next token `[batch, seq_len]`: top-1 confidence and correctness, NLL and the entropy of
  the predicted distribution, and `where` (not padding).

  Only this batch's logits exist, for the length of this function: a split's worth of
  (tokens, V) logits would not fit in memory at vocabulary scale.
  """
  hidden = model.apply(variables, tokens, where=tokens != tokenizer.PAD_ID, train=False)
  logits = jnp.dot(hidden, model.apply(variables, method="output_kernel"),
                   preferred_element_type=jnp.float32).astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits)
  return {
      "confidence": jnp.exp(jnp.max(log_probs, -1)),
      "correct": jnp.argmax(logits, -1) == labels,
      "nll": -jnp.take_along_axis(log_probs, labels[..., None], -1)[..., 0],
      "entropy": losses.entropy(logits),
      "where": labels != tokenizer.PAD_ID,
  }


def next_tokens(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A language model's `evaluate` outputs `[sequences, seq_len]` as `[tokens]`, padding dropped."""
  where = outputs["where"]
  return {name: x[where] for name, x in outputs.items() if name != "where"}


def token_metrics(tokens: dict[str, np.ndarray], num_bins: int = 15) -> dict[str, float]:
  """Next-token accuracy, NLL, perplexity = exp(NLL), ECE over tokens (equal-width bins, as for
  classifiers), mean top-1 confidence and mean entropy (nats) of the predicted distribution."""
  nll = float(np.mean(tokens["nll"], dtype=np.float64))
  return {
      "accuracy": float(np.mean(tokens["correct"])),
      "nll": nll,
      "perplexity": float(np.exp(nll)),
      "ece": calibration.confidence_calibration_error(tokens["confidence"], tokens["correct"],
                                                      num_bins),
      "mean_confidence": float(np.mean(tokens["confidence"], dtype=np.float64)),
      "entropy": float(np.mean(tokens["entropy"], dtype=np.float64)),
      "tokens": int(len(tokens["nll"])),
  }
