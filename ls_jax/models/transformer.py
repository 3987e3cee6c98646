"""Decoder-only Transformer language model whose output layer is left to the fused loss.

GPT-2's layout (Radford et al. 2019): learned token and position embeddings, pre-LayerNorm blocks
of causal multi-head self-attention and a GELU MLP, and a final LayerNorm. `__call__` returns the
final hidden states, not logits: at vocabulary scale the `(tokens, V)` logits are the memory cost,
so the output layer is applied inside `losses.linear_smoothed_cross_entropy` with
`output_kernel()`. With `tie_embedding` that kernel is the token embedding transposed (Press &
Wolf 2017); otherwise it is its own `[d, V]` parameter.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

# GPT-2's initialization: N(0, 0.02) for the embeddings and every projection.
INIT = nn.initializers.normal(stddev=0.02)


class DecoderBlock(nn.Module):
  """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x))."""

  num_heads: int
  mlp_dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    y = nn.LayerNorm(dtype=self.dtype)(x)
    x = x + nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, kernel_init=INIT)(y, y, mask=mask)
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=INIT)(y))
    return x + nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=INIT)(y)


class DecoderOnlyTransformer(nn.Module):
  """Causal language model: `[batch, seq]` token ids -> `[batch, seq, embed_dim]` hidden states."""

  vocab_size: int
  num_layers: int = 2
  num_heads: int = 4
  embed_dim: int = 128
  mlp_dim: int = 512
  max_len: int = 256
  tie_embedding: bool = True
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def setup(self):
    self.token_embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=INIT)
    self.position_embed = self.param('position_embedding', INIT, (self.max_len, self.embed_dim))
    self.blocks = [DecoderBlock(self.num_heads, self.mlp_dim, self.dtype)
                   for _ in range(self.num_layers)]
    self.final_norm = nn.LayerNorm(dtype=self.dtype)
    if not self.tie_embedding:
      self.untied_kernel = self.param('output_kernel', INIT, (self.embed_dim, self.vocab_size))

  def __call__(
      self, tokens: jax.Array, where: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Hidden states; position t sees tokens <= t, and no token where `where` is False (padding).

    Raises:
      ValueError: if the sequence is longer than `max_len`.
    """
    del train  # No dropout; kept for the apply signature all models share.
    seq_len = tokens.shape[-1]
    if seq_len > self.max_len:
      raise ValueError(f'sequence length {seq_len} exceeds max_len {self.max_len}.')
    x = self.token_embed(tokens) + self.position_embed[:seq_len]
    mask = nn.make_causal_mask(tokens)
    if where is not None:
      mask = nn.combine_masks(mask, nn.make_attention_mask(where, where))
    x = x.astype(self.dtype)
    for block in self.blocks:
      x = block(x, mask)
    return self.final_norm(x)

  def output_kernel(self) -> jax.Array:
    """The `[embed_dim, vocab_size]` output layer: logits are `hidden @ output_kernel()`."""
    return self.token_embed.embedding.T if self.tie_embedding else self.untied_kernel
