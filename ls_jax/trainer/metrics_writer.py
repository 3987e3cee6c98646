"""Where metrics go: `<workdir>/metrics.jsonl`, TensorBoard event files, and the terminal."""
import json
import pathlib
import sys
import time
from typing import Any


class MetricsWriter:
  """Appends scalars to metrics.jsonl and TensorBoard; writes results.json. Process 0 only."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    if not enabled:
      return
    # TensorBoard's own event writer: light (no TensorFlow, and unlike tensorboardX it does not
    # import PyTorch when PyTorch happens to be installed, which cost 1.2 s a run).
    from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=g-import-not-at-top
    self._tensorboard = EventFileWriter(str(self.workdir / "tensorboard"))
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    self._add_summary(step, [summary_pb2.Summary.Value(tag=name, simple_value=float(value))
                             for name, value in scalars.items()])
    self._jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
    self._jsonl.flush()

  def write_text(self, name: str, text: str) -> None:
    if self.enabled:
      from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2  # pylint: disable=g-import-not-at-top
      metadata = summary_pb2.SummaryMetadata(
          plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
      tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()])
      self._add_summary(0, [summary_pb2.Summary.Value(tag=name, metadata=metadata, tensor=tensor)])

  def _add_summary(self, step: int, values: list) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    self._tensorboard.add_event(event_pb2.Event(
        wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))

  def write_predictions(self, arrays: dict[str, Any]) -> None:
    """`predictions.npz`: the final logits and labels, for analyses that need no retraining."""
    if not self.enabled:
      return
    import numpy as np  # pylint: disable=g-import-not-at-top
    path = self.workdir / "predictions.npz"
    tmp = path.with_suffix(".npz.tmp")
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
    tmp.rename(path)

  def write_results(self, results: dict[str, Any]) -> None:
    if not self.enabled:
      return
    path = self.workdir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.rename(path)  # Atomic: a reader never sees half a file.

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()
      self._jsonl.close()


class Progress:
  """A tqdm bar on a terminal; one log line per logging interval otherwise (CI, files)."""

  def __init__(self, start_step: int, num_steps: int, *, enabled: bool = True):
    self.last_step = start_step
    self.enabled = enabled
    self._bar = None
    if enabled and sys.stderr.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True)
    self._num_steps = num_steps

  def update(self, step: int, summary: dict[str, float]) -> None:
    # A language model's step has no accuracy (its logits are never built there).
    accuracy = {"acc": f"{summary['accuracy']:.3f}"} if "accuracy" in summary else {}
    if self._bar is not None:
      self._bar.update(step - self.last_step)
      self._bar.set_postfix(loss=f"{summary['loss']:.4f}", **accuracy)
    elif self.enabled:
      remaining = (self._num_steps - step) / max(summary["steps_per_second"], 1e-9)
      print(f"step {step}/{self._num_steps}  loss {summary['loss']:.4f}  "
            + "".join(f"{name} {value}  " for name, value in accuracy.items())
            + f"{summary['steps_per_second']:.0f} steps/s  eta {remaining:.0f}s", flush=True)
    self.last_step = step

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
