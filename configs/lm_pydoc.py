"""Next-token language model on embedded English text: the Python Language Reference topics.

  python scripts/train.py --config=configs/lm_pydoc.py --workdir=runs/lm_pydoc_ce
  python scripts/train.py --config=configs/lm_pydoc.py --config.loss.label_smoothing=0.1 \
      --workdir=runs/lm_pydoc_ls
  python scripts/next_word.py runs/lm_pydoc_ce runs/lm_pydoc_ls

The text ships with every CPython (`pydoc_data.topics`, PSF licence; `pydoc_text` in
ls_jax/trainer/embedded_datasets.py): 80/10/10 contiguous blocks, a 2048-word vocabulary built from the
training block, windows of 64 next-token targets. The model is a 2-layer, 64-wide decoder-only
Transformer with a tied embedding (0.24M parameters), small enough for a 2-core CPU; its output
layer is fused into the loss (`losses.linear_smoothed_cross_entropy`). Adam 3e-3 with a linear
warm-up over the first sixth of the steps (num_steps // 6: 100 of 600) and cosine decay, batch
16 x 64 tokens, 600 steps (~7 epochs of the 1296 training windows).
`--config.model_axis_size=2` (or 4, 8 devices) splits the vocabulary over a `model` mesh axis
(`losses.vocab_parallel_linear_smoothed_cross_entropy`). Variants: add `:runlocal` for a 60-step
smoke run.
"""
import ml_collections

from configs import default
from configs.common import parse_arg


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  config = default.get_config()
  config.data.name = "pydoc_text"
  config.data.train_split, config.data.validation_split = "train", "validation"
  config.data.test_split = "test"
  config.data.seq_len = 64
  config.num_classes = 2048  # The vocabulary, <pad> <eos> <unk> included.
  config.model.name = "transformer_lm"
  config.lm.num_layers, config.lm.num_heads = 2, 4
  config.lm.embed_dim, config.lm.mlp_dim = 64, 256
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = "cosine"
  # Warm-up: the first sixth of training (100 of 600 steps; 10 of :runlocal's 60), derived from
  # num_steps when the config is resolved, so `--config.num_steps=N` works for any N >= 1 (N < 6:
  # no warm-up). `--config.optimizer.warmup_steps=W` sets it outright.
  config.optimizer.warmup_steps = config.get_ref("num_steps") // 6
  config.optimizer.grad_clip_norm = 1.0
  config.batch_size = 16
  config.eval_batch_size = 64  # Sequences: 4096 tokens' logits at a time in evaluation.
  config.num_steps = 600
  config.log_every_steps = 100
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  if options.runlocal:
    config.num_steps = 60  # Warm-up 10 steps (num_steps // 6).
    config.log_every_steps = 10
    config.eval_every_steps = 30
  return config
