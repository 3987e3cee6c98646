"""The generated tables of the pages (`ls_jax/experiments/pages.py`, `scripts/pages.py`)."""
import pathlib
import subprocess
import sys

import pytest

from ls_jax.experiments import pages

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADER = ("group,metric,n,mean,std,ci_low,ci_high,seeds,baseline,n_paired,diff,diff_ci_low,"
          "diff_ci_high,p_value,verdict,unpaired_seeds\n")
# Hand-made: CE and LS 0.1 on two metrics; LS 0.1 accuracy is compared with CE and with a peak.
SUMMARY = HEADER + (
    "CE,accuracy,10,0.92141,0.007,0.91649,0.92651,0 1,,,,,,,,\n"
    "CE,ece,10,0.0618,0.007,0.0566,0.0671,0 1,,,,,,,,\n"
    "LS 0.1,accuracy,10,0.95251,0.003,0.9499,0.9551,0 1,CE,10,0.03116,0.0251,0.0372,0.000012,"
    "improves,\n"
    "LS 0.1,accuracy,10,0.95251,0.003,0.9499,0.9551,0 1,peak,10,-0.0049,-0.0111,0.0013,0.1123,"
    '"no difference detected (n=10)",\n'
    "LS 0.1,ece,10,0.1334,0.01,0.1259,0.1409,0 1,CE,10,0.0716,0.0621,0.0811,0.0000004,worse,\n"
    "noise 0.2: CE,accuracy,10,0.6344,0.02,0.617,0.652,0 1,,,,,,,,\n"
    "noise 0.2: LS 0.1,accuracy,10,0.6564,0.02,0.64,0.67,0 1,noise 0.2: CE,10,0.022,0.004,"
    "0.04,0.02,improves,\n"
    # Fine-tuned from a warm-up named after the noise; one group name holds a literal `*`.
    "noise 0.2: CE (from ce_noise0.2),accuracy,10,0.64,0.02,0.62,0.66,0 1,,,,,,,,\n"
    "noise 0.2: LS 0.1 (from ce_noise0.2),accuracy,10,0.67,0.02,0.65,0.69,0 1,"
    "noise 0.2: CE (from ce_noise0.2),10,0.03,0.01,0.05,0.01,improves,\n"
    "noise 0.4: CE (from ce_noise0.4),accuracy,10,0.45,0.02,0.43,0.47,0 1,,,,,,,,\n"
    "noise 0.4: LS 0.1 (from ce_noise0.4),accuracy,10,0.46,0.02,0.44,0.48,0 1,"
    "noise 0.4: CE (from ce_noise0.4),10,0.01,-0.01,0.03,0.3,no difference detected,\n"
    "noise* 0.2: CE (from x),accuracy,10,0.11,0.02,0.09,0.13,0 1,,,,,,,,\n")


@pytest.fixture
def root(tmp_path):
  (tmp_path / "docs" / "results" / "toy").mkdir(parents=True)
  (tmp_path / "docs" / "results" / "toy" / "summary.csv").write_text(SUMMARY)
  return tmp_path


def _render(root, directive):
  text = f"<!-- table: docs/results/toy/summary.csv {directive} -->\nstale\n<!-- /table -->\n"
  return pages.update_text(text, root).split("\n", 1)[1].rsplit("<!-- /table -->", 1)[0]


def test_table_means_and_paired_differences(root):
  got = _render(root, 'rows="CE,LS 0.1" metrics=accuracy,ece columns=mean_ci,delta '
                      'baseline=CE header="method,acc,Δ acc,ECE,Δ ECE"')
  assert got == (
      "| method | acc | Δ acc | ECE | Δ ECE |\n"
      "|---|---|---|---|---|\n"
      "| CE | 0.921 [0.916, 0.927] | | 0.062 [0.057, 0.067] | |\n"
      "| LS 0.1 | 0.953 [0.950, 0.955] | +0.031 [+0.025, +0.037] | 0.133 [0.126, 0.141] "
      "| +0.072 [+0.062, +0.081] |\n")


def test_table_not_detected_digits_p_and_default_header(root):
  got = _render(root, 'rows="LS 0.1" metrics=accuracy columns=mean,delta,p,verdict '
                      'baseline=peak digits=4')
  assert got == (
      "| group | accuracy | Δ accuracy | p (accuracy) | accuracy verdict |\n"
      "|---|---|---|---|---|\n"
      "| LS 0.1 | 0.9525 | n.d. \u22120.0049 [\u22120.0111, +0.0013] | 0.11 "
      "| no difference detected (n=10) |\n")


def test_table_match_template_and_per_column_fields(root):
  got = _render(root, 'match="{row}: {col}" where=metric:accuracy rows="noise 0.2" '
                      'labels="symmetric 0.2" metrics="CE@mean_ci,LS 0.1@diff" digits=2,CE:3')
  assert got == (
      "| group | CE | Δ LS 0.1 |\n"
      "|---|---|---|\n"
      "| symmetric 0.2 | 0.634 [0.617, 0.652] | +0.02 |\n")


def test_table_match_wildcard_fills_a_grid_of_fine_tuned_runs(root):
  """`*` in match= stands for the warm-up's name, which differs from row to row."""
  got = _render(root, 'match="{row}: {col} (from *)" where=metric:accuracy '
                      'rows="noise 0.2,noise 0.4" metrics="CE@mean,LS 0.1@delta" digits=2')
  assert got == (
      "| group | CE | Δ LS 0.1 |\n"
      "|---|---|---|\n"
      "| noise 0.2 | 0.64 | +0.03 [+0.01, +0.05] |\n"
      "| noise 0.4 | 0.45 | n.d. +0.01 [\u22120.01, +0.03] |\n")
  # A `*` in a row value is literal: "noise*" matches its own group only, not "noise 0.2: ...".
  assert _render(root, 'match="{row}: {col} (from *)" where=metric:accuracy rows="noise* 0.2" '
                       'metrics="CE@mean" digits=2').endswith("| noise* 0.2 | 0.11 |\n")
  with pytest.raises(pages.PagesError, match="no csv row for the table row 'noise 0.6'"):
    _render(root, 'match="{row}: {col} (from *)" rows="noise 0.6" metrics="CE@mean"')


def test_table_baseline_per_row(root):
  """`baseline="{row}"`: each row's Δ against its own baseline group (here LS 0.1 against CE)."""
  got = _render(root, 'rows=CE match="LS 0.1" baseline="{row}" metrics=accuracy,ece '
                      'columns=diff header="against,Δ acc,Δ ECE"')
  assert got == ("| against | Δ acc | Δ ECE |\n"
                 "|---|---|---|\n"
                 "| CE | +0.031 | +0.072 |\n")


def test_value_in_prose(root):
  text = ('gains <!-- value: docs/results/toy/summary.csv where="group:LS 0.1,metric:accuracy" '
          "baseline=CE field=diff_ci -->old<!-- /value --> points\n")
  assert pages.update_text(text, root) == text.replace(
      "old", "+0.031 [+0.025, +0.037]")


@pytest.mark.parametrize("directive, message", [
    ('rows="CE,LS 0.1" metrics=accuracy columns=delta', "several baselines"),
    ('rows="CE,LS 0.2" metrics=accuracy', "no csv row for the table row 'LS 0.2'"),
    ("metrics=accuracy,brier", "no csv row for the table column 'brier'"),
    ("metrics=accuracy columns=median", "unknown field 'median'"),
    ("metrics=accuracy colour=red", "unknown option(s) colour"),
    ("metrics=accuracy where=model:cnn", "no column 'model'"),
])
def test_table_errors_name_the_page_and_line(root, directive, message):
  with pytest.raises(pages.PagesError, match=r"^page.md:2: .*" + _escape(message)):
    pages.update_text("intro\n<!-- table: docs/results/toy/summary.csv " + directive
                      + " -->\n<!-- /table -->\n", root, "page.md")


def _escape(text):
  import re  # pylint: disable=g-import-not-at-top
  return re.escape(text)


def test_check_mode_reports_and_rewrite_fixes(root):
  page = root / "docs" / "page.md"
  page.write_text("<!-- table: docs/results/toy/summary.csv metrics=ece -->\n<!-- /table -->\n")
  assert pages.update_pages(root, write=False) == [page]
  assert pages.update_pages(root) == [page]
  assert "| LS 0.1 | 0.133 [0.126, 0.141] |" in page.read_text()
  assert pages.update_pages(root) == []


def test_committed_pages_are_up_to_date_with_their_data():
  """README.md and docs/**/*.md equal what `python scripts/pages.py` would write."""
  assert pages.update_pages(ROOT, write=False) == [], (
      "run `python scripts/pages.py`: these pages differ from their summary.csv")


def test_script_check_exits_zero_on_the_committed_pages():
  result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pages.py"), "--check"],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
