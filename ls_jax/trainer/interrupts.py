"""SIGINT and SIGTERM at any moment: one line and a defined exit status, never a traceback.

Two regimes:
* Inside the training loop, `StopRequest` turns the signal into a flag that the loop checks
  between steps: it saves a checkpoint, prints one line and the process exits 0 (preemption).
* Everywhere else (imports, data loading, compilation, the final evaluation), `exit_on_signals`
  ends the process at once with one line and exit status 128 + the signal number (130 for
  SIGINT, 143 for SIGTERM). It uses `os._exit`: unwinding a `KeyboardInterrupt` through JAX's
  C++ compilation and runtime threads is what printed long tracebacks and, now and then, crashed
  with a segmentation fault.
Before the first step nothing needs saving: every file a run writes before then (config.json) is
written to a temporary name and renamed, and a rerun redoes the rest.
"""
import os
import signal
from typing import Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
BEFORE_FIRST_STEP = "before the first training step; rerun the same command to start (or resume)"
_situation = BEFORE_FIRST_STEP


def exit_on_signals() -> None:
  """Installs the exit-at-once handler. Call it first thing in the program (the CLI does)."""
  for sig in _SIGNALS:
    signal.signal(sig, _exit_at_once)


def set_situation(text: str) -> None:
  """What the exit-at-once line says about where the run stands (and what a rerun does)."""
  global _situation
  _situation = text


def _exit_at_once(signum, frame) -> None:
  del frame
  os.write(2, f"ls_jax: stopped by {signal.Signals(signum).name} {_situation}\n".encode())
  os._exit(128 + signum)


class StopRequest:
  """Within the `with` block, SIGTERM/SIGINT set a flag that the training loop checks."""

  def __init__(self):
    self.signal_name: Optional[str] = None
    self._previous = {}

  def __enter__(self):
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
