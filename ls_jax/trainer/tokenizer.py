"""A word-level tokenizer built locally and deterministically from a training text.

Lowercased text is split into runs of letters and digits, and single other characters
(punctuation, brackets, quotes: `"don't!"` -> `" don ' t ! "`). The vocabulary is the special
tokens, then the most frequent words of the training text, ties broken alphabetically, so the same
text always gives the same vocabulary; every other word maps to `<unk>`.
"""
import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # Ids 0, 1, 2: padding is id 0.
PAD_ID, EOS_ID, UNK_ID = range(3)

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
  """`text` lowercased and split into words and single punctuation characters."""
  return _WORD.findall(text.lower())


def build_vocabulary(words: Iterable[str], size: int) -> list[str]:
  """The special tokens, then the `size - 3` most frequent `words` (ties: alphabetical order).

  Raises:
    ValueError: if `size` leaves no room for a word.
  """
  if size <= len(SPECIAL_TOKENS):
    raise ValueError(f"vocabulary size must be > {len(SPECIAL_TOKENS)}, got {size}.")
  counts = collections.Counter(w for w in words if w not in SPECIAL_TOKENS)
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return [*SPECIAL_TOKENS, *(word for word, _ in ranked[:size - len(SPECIAL_TOKENS)])]


class Tokenizer:
  """Words <-> ids for a vocabulary from `build_vocabulary`."""

  def __init__(self, vocabulary: Sequence[str]):
    if tuple(vocabulary[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
      raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}, got {tuple(vocabulary[:3])}.")
    self.vocabulary = list(vocabulary)
    self._ids = {word: i for i, word in enumerate(self.vocabulary)}

  def encode(self, text: str) -> list[int]:
    return self.encode_words(split_words(text))

  def encode_words(self, words: Iterable[str]) -> list[int]:
    return [self._ids.get(word, UNK_ID) for word in words]

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self.vocabulary[int(i)] for i in ids]


def token_windows(stream: np.ndarray, window: int) -> np.ndarray:
  """`[num_windows, window]` windows at stride `window - 1`; the last one is padded with 0s."""
  stride = window - 1
  count = max(1, -(-(len(stream) - 1) // stride))
  padded = np.zeros(count * stride + 1, stream.dtype)
  padded[:len(stream)] = stream
  return np.stack([padded[i * stride:i * stride + window] for i in range(count)])
