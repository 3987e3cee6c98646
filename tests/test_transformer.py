"""Tests for the decoder-only Transformer: causality, padding, the tied kernel and the fused loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ls_jax import losses
from ls_jax.models import transformer

VOCAB, SEQ = 50, 8


def init_model(tie_embedding=True, dtype=jnp.float32):
  model = transformer.DecoderOnlyTransformer(
      vocab_size=VOCAB, num_layers=2, num_heads=2, embed_dim=16, mlp_dim=32, max_len=SEQ,
      tie_embedding=tie_embedding, dtype=dtype)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SEQ), jnp.int32))
  return model, variables


def tokens(seed=0):
  return jax.random.randint(jax.random.PRNGKey(seed), (3, SEQ), 0, VOCAB)


@pytest.mark.parametrize("tie_embedding", [True, False])
def test_shapes_and_output_kernel(tie_embedding):
  model, variables = init_model(tie_embedding)
  hidden = model.apply(variables, tokens())
  kernel = model.apply(variables, method=model.output_kernel)
  assert hidden.shape == (3, SEQ, 16) and kernel.shape == (16, VOCAB)
  embedding = variables["params"]["token_embed"]["embedding"]
  assert ("output_kernel" in variables["params"]) != tie_embedding
  if tie_embedding:
    np.testing.assert_array_equal(kernel, embedding.T)


def test_causal_future_tokens_do_not_change_the_past():
  model, variables = init_model()
  x = tokens()
  changed = x.at[:, 5].set((x[:, 5] + 1) % VOCAB)
  before, after = model.apply(variables, x), model.apply(variables, changed)
  np.testing.assert_allclose(before[:, :5], after[:, :5], atol=1e-6)
  assert np.abs(before[:, 5:] - after[:, 5:]).max() > 1e-3  # and the future does change


def test_padding_is_invisible_to_real_tokens():
  model, variables = init_model()
  x = tokens()
  where = jnp.arange(SEQ)[None, :] >= jnp.array([[0], [2], [3]])  # left padding per row
  changed = jnp.where(where, x, (x + 7) % VOCAB)  # other pad token ids
  before = model.apply(variables, x, where)
  after = model.apply(variables, changed, where)
  np.testing.assert_allclose(np.where(where[..., None], before, 0),
                             np.where(where[..., None], after, 0), atol=1e-6)
  # Without the mask, the pads would leak into the real tokens.
  leaked = model.apply(variables, changed)
  assert np.abs(np.where(where[..., None], before - leaked, 0)).max() > 1e-3


@pytest.mark.parametrize("tie_embedding", [True, False])
def test_fused_loss_equals_materialized_logits_in_value_and_gradient(tie_embedding):
  model, variables = init_model(tie_embedding)
  x, where = tokens(), jnp.arange(SEQ)[None, :] < jnp.array([[SEQ], [6], [4]])
  inputs, targets, mask = x[:, :-1], x[:, 1:], where[:, 1:]

  def loss(params, fused):
    hidden = model.apply({"params": params}, inputs, where[:, :-1])
    kernel = model.apply({"params": params}, method=model.output_kernel)
    if fused:
      per_token = losses.linear_smoothed_cross_entropy(
          hidden, kernel, targets, 0.1, where=mask, chunk_size=16)
    else:
      per_token = losses.smoothed_cross_entropy(hidden @ kernel, targets, 0.1, where=mask)
    return per_token.sum() / mask.sum()

  values, grads = zip(*(jax.jit(jax.value_and_grad(loss), static_argnums=1)(
      variables["params"], fused) for fused in (True, False)))
  np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), grads[0], grads[1])
  # With a tied embedding the output layer's gradient reaches the embedding through the kernel.
  assert np.abs(grads[0]["token_embed"]["embedding"]).max() > 0


def test_bfloat16_compute():
  model, variables = init_model(dtype=jnp.bfloat16)
  hidden = model.apply(variables, tokens())
  assert hidden.dtype == jnp.bfloat16 and np.isfinite(np.asarray(hidden, np.float32)).all()


def test_too_long_sequence_is_a_clear_error():
  model, variables = init_model()
  with pytest.raises(ValueError, match="sequence length 9 exceeds max_len 8"):
    model.apply(variables, jnp.zeros((1, SEQ + 1), jnp.int32))
