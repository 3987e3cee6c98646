"""The benchmark record (`scripts/benchmark.py`): its JSON's schema and docs/benchmarks.md in sync.

No timing is asserted here: speed is held by the record, not by tests.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "results" / "benchmarks" / "record.json"
DOCS = ROOT / "docs" / "benchmarks.md"
MACHINE_FIELDS = ("cpu_model", "lscpu_model_name", "cores", "jax", "jaxlib", "numpy", "ml_dtypes",
                  "backend")


def _benchmark():
  spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _summaries(node, path=""):
  """Every {"rounds", "median", "range"} object in the record, with where it sits."""
  if isinstance(node, dict):
    if "rounds" in node and "median" in node:
      yield path, node
    else:
      for key, value in node.items():
        yield from _summaries(value, f"{path}.{key}")


def check_schema(record: dict) -> None:
  for field in ("command", "date", "duration_s", "machine", "figures"):
    assert field in record, field
  assert "scripts/benchmark.py" in record["command"]
  for field in MACHINE_FIELDS:
    assert record["machine"].get(field), field
  figures = record["figures"]
  assert set(figures) == {"train_step", "whole_process", "sweep_throughput", "seed_batching",
                          "fused_loss"}
  for name, figure in figures.items():
    found = list(_summaries(figure, name))
    assert found, f"{name} has no rounds"
    for path, summary in found:
      assert set(summary) == {"rounds", "median", "range"}, path
      rounds = summary["rounds"]
      assert rounds and all(isinstance(x, float) for x in rounds), path
      assert summary["range"] == [min(rounds), max(rounds)], path
      assert min(rounds) <= summary["median"] <= max(rounds), path
  step = figures["train_step"]
  assert "CE" in step["methods"] and "gflops_per_s" in step["matmul"]
  for row in step["methods"].values():
    assert row["flops"] > 0 and 0 < row["matmul_roofline_share"] and row["compilations"] == 1
  whole = figures["whole_process"]
  assert "fixed_cost_s" in whole
  assert ("pytorch_over_ls_jax" in whole) != ("skipped" in whole["torch"])
  assert "throughput_ratio" in figures["sweep_throughput"]
  assert set(figures["seed_batching"]["models"]) == {"cnn1d", "mlp"}
  for row in figures["seed_batching"]["models"].values():
    assert "speedup" in row and len(row) == 3  # Both programs and their paired ratio.
  fused = figures["fused_loss"]
  for row in fused["paths"].values():
    assert "time_ratio" in row and row["temp_bytes"] >= 0
  assert fused["default_path"] in fused["paths"]


def test_committed_record_schema():
  record = json.loads(RECORD.read_text())
  check_schema(record)
  assert not record["quick"]
  assert record["figures"]["whole_process"]["num_steps"] == 6000
  assert record["figures"]["sweep_throughput"]["runs"] == 10


def test_docs_in_sync_with_record():
  """docs/benchmarks.md's generated blocks are what the committed JSON renders to."""
  benchmark = _benchmark()
  text = DOCS.read_text()
  names = [match.group("name") for match in benchmark.BLOCK.finditer(text)]
  assert sorted(names) == sorted(benchmark.render(json.loads(RECORD.read_text())))
  assert benchmark.sync_docs(text, json.loads(RECORD.read_text())) == text, (
      "docs/benchmarks.md is out of date: python scripts/benchmark.py --render")


def test_sync_rewrites_only_blocks():
  benchmark = _benchmark()
  record = json.loads(RECORD.read_text())
  text = "before\n<!-- benchmark: sweep_throughput -->\nstale\n<!-- /benchmark -->\nafter\n"
  synced = benchmark.sync_docs(text, record)
  assert synced.startswith("before\n<!-- benchmark: sweep_throughput -->\n")
  assert synced.endswith("<!-- /benchmark -->\nafter\n") and "stale" not in synced
  assert benchmark.render(record)["sweep_throughput"] in synced
  with pytest.raises(ValueError, match="unknown benchmark block"):
    benchmark.sync_docs("<!-- benchmark: nope -->\n<!-- /benchmark -->", record)


def test_quick_run_writes_a_valid_record(tmp_path):
  """`scripts/benchmark.py --quick`: every figure, tiny (about 20 s on 2 cores)."""
  out = tmp_path / "record.json"
  # conftest's 8 forced host devices would make the default batch of 100 indivisible.
  env = {name: value for name, value in os.environ.items() if name != "XLA_FLAGS"}
  docs = tmp_path / "benchmarks.md"
  docs.write_text("x\n<!-- benchmark: fused_loss -->\n<!-- /benchmark -->\n")
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick",
                         "--out", str(out), "--docs", str(docs), "--torch-python", sys.executable],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  record = json.loads(out.read_text())
  check_schema(record)
  assert record["quick"]
  assert "Forward+grad" in docs.read_text()
  # The committed record is left alone by --quick.
  assert json.loads(RECORD.read_text())["quick"] is False
