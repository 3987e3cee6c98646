"""The language-model report: fake next-token runs (results.json as the LM evaluation writes it)
through scripts/report.py, paired LS - CE by seed."""
import csv
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from ls_jax.experiments import language_model

REPO = pathlib.Path(__file__).resolve().parents[1]
EDGES = list(np.linspace(0, 1, 16))


def _fake_lm_run(root: pathlib.Path, seed: int, a: float) -> dict:
  rng = np.random.default_rng([seed, int(100 * a)])
  nll = 4.4 + 0.05 * rng.normal()
  results = {
      "accuracy": 0.21 + 0.005 * a * 10 + 0.003 * rng.normal(), "nll": nll,
      "perplexity": float(np.exp(nll)), "ece": 0.06 - 0.3 * a + 0.003 * rng.normal(),
      "mean_confidence": 0.27 - 0.25 * a + 0.005 * rng.normal(),
      "entropy": 3.9 + 5.5 * a + 0.05 * rng.normal(), "tokens": 1000,
      "reliability": {"edges": EDGES, "mean_confidence": [None] * 15, "accuracy": [None] * 15,
                      "count": [0] * 15},
      "environment": {"cpu_model": "Fake CPU", "jax_version": "0.10.2", "backend": "cpu"},
      "config": {"seed": seed, "num_classes": 2048, "data": {"name": "pydoc_text"},
                 "model": {"name": "transformer_lm"}, "loss": {"label_smoothing": a}}}
  for i, (c, acc, n) in enumerate(((0.1, 0.08, 600), (0.3, 0.25, 300), (0.7, 0.6, 100))):
    k = int(c * 15)
    results["reliability"]["mean_confidence"][k] = c
    results["reliability"]["accuracy"][k] = acc + 0.01 * i * a
    results["reliability"]["count"][k] = n
  workdir = root / f"lm_pydoc_loss.label_smoothing={a:g}_seed{seed}"
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps(results))
  return results


def test_language_model_report_pairs_ls_with_ce_by_seed(tmp_path):
  values = {(a, s): _fake_lm_run(tmp_path / "lm", s, a) for a in (0.0, 0.1) for s in range(3)}
  spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  out = tmp_path / "out"
  assert script.main(["language_model", "--runs", str(tmp_path / "lm"), "--out", str(out)]) == 0
  with open(out / "summary.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert {(r["group"], r["metric"]) for r in rows} == {
      (g, m.name) for g in ("CE", "LS 0.1") for m in language_model.METRICS}
  (ece,) = [r for r in rows if r["group"] == "LS 0.1" and r["metric"] == "ece"]
  assert ece["baseline"] == "CE" and ece["n_paired"] == "3" and ece["verdict"] == "improves"
  np.testing.assert_allclose(float(ece["diff"]), np.mean(
      [values[0.1, s]["ece"] - values[0.0, s]["ece"] for s in range(3)]), rtol=1e-9)
  text = (out / "summary.md").read_text()
  assert "1,000 tokens" in text and "Fake CPU" in text and (out / "reliability.png").exists()


def test_language_model_report_needs_language_model_runs():
  with pytest.raises(ValueError, match="no language-model run"):
    language_model.report([{"accuracy": 0.9, "config": {"seed": 0}}])
