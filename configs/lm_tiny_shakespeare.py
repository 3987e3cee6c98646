"""Next-token language model on TFDS `tiny_shakespeare` (char-rnn text), for accelerators.

  tfds build tiny_shakespeare --file_format=array_record --data_dir=DATA_DIR   # once, online
  python scripts/train.py --config=configs/lm_tiny_shakespeare.py --config.data.data_dir=DATA_DIR \
      --workdir=runs/lm_shakespeare_ce [--config.loss.label_smoothing=0.1]

TFDS ships the text as one string per split (train/validation/test: 1003854/55770/55770
characters). Rather than its 65 characters, the model predicts words: the text is tokenized at
load time by `ls_jax.trainer.tokenizer` (the vocabulary is the 8192 - 3 most frequent words of the
training split) and cut into windows of 128 next-token targets (`input_pipeline`). A 4-layer,
256-wide Transformer with a tied embedding. Variants: `:runlocal` for a 50-step smoke run.
"""
import ml_collections

from configs import default
from configs.common import parse_arg


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  config = default.get_config()
  config.data.name = "tiny_shakespeare"
  config.data.train_split, config.data.validation_split = "train", "validation"
  config.data.test_split = "test"
  config.data.seq_len = 128
  config.num_classes = 8192  # Vocabulary size, <pad> <eos> <unk> included.
  config.model.name = "transformer_lm"
  config.lm.num_layers, config.lm.num_heads = 4, 8
  config.lm.embed_dim, config.lm.mlp_dim = 256, 1024
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  # Warm-up: the first 4% of training (200 of 5000 steps), derived from num_steps when the config
  # is resolved, so `--config.num_steps=N` works for any N >= 1 (N < 25: no warm-up).
  # `--config.optimizer.warmup_steps=W` sets it outright.
  config.optimizer.warmup_steps = config.get_ref("num_steps") // 25
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.weight_decay = 0.1
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_steps = 5000
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  if options.runlocal:
    config.num_steps = 50
    config.optimizer.warmup_steps = config.get_ref("num_steps") // 5  # 10 of 50 steps.
    config.log_every_steps = 10
    config.eval_every_steps = 0
  return config
