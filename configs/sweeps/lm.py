"""Language model: next-token CE against label smoothing 0.1 on the embedded English text.

  python scripts/sweep.py configs/sweeps/lm.py --out runs/lm --parallel 1
  python scripts/summarize.py runs/lm
  python scripts/next_word.py runs/lm/<CE run> runs/lm/<LS run>

configs/lm_pydoc.py (2-layer Transformer, 2048-word vocabulary, Python Language Reference text),
a in {0, 0.1}, 10 seeds: 20 runs, about 9 minutes one at a time on a 2-core CPU. Per-token test
accuracy, perplexity, ECE, mean confidence and entropy of the next-token distribution are in each
run's results.json.
"""
from configs.sweeps.common import sweep


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/lm_pydoc.py",
          "points": sweep("loss.label_smoothing", (0.0, 0.1)),
          "seeds": range(10)}
