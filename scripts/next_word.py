#!/usr/bin/env python
"""Top-10 next words and the entropy of the next-word distribution, side by side for LM runs.

  python scripts/next_word.py runs/lm_pydoc_ce runs/lm_pydoc_ls
  python scripts/next_word.py runs/lm_pydoc_ce runs/lm_pydoc_ls --prompt "the value of"

Each run's final checkpoint is restored and its model reads the prompt, tokenized with the
vocabulary stored with its dataset (words outside it read as <unk>; the tokens are printed).
The probabilities are the softmax of the last position's logits over the whole vocabulary.
"""
import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=g-import-not-at-top
from ls_jax.trainer import checkpointing, input_pipeline, tokenizer, train
from ls_jax.trainer import tasks
from ls_jax.trainer import methods
# pylint: enable=g-import-not-at-top

# The seed example of the README, then prompts of the corpus (the Python Language Reference).
DEFAULT_PROMPTS = ("hello how are", "the value of the", "an object is", "if the")


def next_word_probabilities(workdir: pathlib.Path, prompts: list[str]):
  """(method name, the prompts' token strings, `[prompts, V]` next-token probabilities, vocabulary)
  of the run in `workdir`, from its last checkpoint."""
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())
  if not steps:
    raise SystemExit(f"next_word.py: error: {workdir} holds no checkpoint")
  params = checkpointing.read_state_arrays(workdir / "checkpoints" / str(steps[-1]))["params"]
  vocabulary = input_pipeline.load_dataset(config.data, num_classes=config.num_classes,
                                           seed=config.seed).vocabulary
  if vocabulary is None:
    raise SystemExit(f"next_word.py: error: {workdir} is not a language-model run")
  words = tokenizer.Tokenizer(vocabulary)
  model = train.get_model(config, tasks.task_for(config))
  probabilities, read = [], []
  for prompt in prompts:
    ids = words.encode(prompt)[-config.data.seq_len:]
    if not ids:
      raise SystemExit(f"next_word.py: error: prompt {prompt!r} has no words")
    read.append(" ".join(words.decode(ids)))
    hidden = model.apply({"params": params}, jnp.asarray([ids], jnp.int32))
    logits = hidden[0, -1] @ model.apply({"params": params}, method="output_kernel")
    probabilities.append(np.asarray(jax.nn.softmax(logits.astype(jnp.float32)), np.float64))
  return methods.label(config.to_dict()), read, np.stack(probabilities), vocabulary


def entropy_nats(p: np.ndarray) -> float:
  return float(-np.sum(p * np.log(np.where(p > 0, p, 1))))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path, help="finished LM runs")
  parser.add_argument("--prompt", action="append", help=f"repeatable; default: {DEFAULT_PROMPTS}")
  parser.add_argument("--top", type=int, default=10)
  args = parser.parse_args(argv)
  prompts = args.prompt or list(DEFAULT_PROMPTS)
  runs = [next_word_probabilities(w, prompts) for w in args.workdirs]
  width = 26
  for (method, *_), workdir in zip(runs, args.workdirs):
    print(f"{method}: {workdir}")
  for i, prompt in enumerate(prompts):
    print(f'\nprompt "{prompt}" -> tokens: {runs[0][1][i]}')
    print(f"{'rank':<5}" + "".join(f"{method:>16}{'':<{width - 16}}" for method, *_ in runs))
    tops = [np.argsort(-p[i], kind="stable")[:args.top] for _, _, p, _ in runs]
    for rank in range(args.top):
      print(f"{rank + 1:<5}" + "".join(
          f"{f'{v[top[rank]]!s:>12} {p[i, top[rank]]:.3f}':<{width}}"
          for (_, _, p, v), top in zip(runs, tops)))
    print(f"{'H':<5}" + "".join(f"{f'entropy {entropy_nats(p[i]):.2f} nats':<{width}}"
                                for _, _, p, _ in runs))
  return 0


if __name__ == "__main__":
  sys.exit(main())
