"""Tables and numbers in the markdown pages, generated from the committed `summary.csv` files.

Every results table of `README.md` and `docs/**/*.md` sits between two HTML comments (invisible on
GitHub) that say which data it shows; `python scripts/pages.py` rewrites what lies between them
from the data, and `tests/test_pages.py` fails when a page is out of date. Numbers are rounded
once, here, from the floats in the csv.

A table:

    <!-- table: docs/results/strength/summary.csv rows="CE,LS 0.1" metrics=accuracy,ece
         columns=mean_ci,delta header="method,accuracy,Δ accuracy,ECE,Δ ECE" -->
    | method | accuracy | Δ accuracy | ECE | Δ ECE |
    |---|---|---|---|---|
    | CE | 0.921 [0.916, 0.927] | | 0.062 [0.057, 0.067] | |
    ...
    <!-- /table -->

A number in prose (one csv row, one field, on one line):

    LS 0.1 gains <!-- value: docs/results/strength/summary.csv
    where="group:LS 0.1,metric:accuracy,baseline:CE" field=diff_ci -->+0.031 [+0.025, +0.037]<!-- /value -->

The path is relative to the repository root. Options are `name=value`, split like a shell line
(quotes group words; a backslash is an ordinary character); a list is comma-separated, and `\\,`
is a comma inside an item. A directive may span lines.

Table options:
  by=COL        the csv column whose values are the table's rows (default `group`).
  rows=V,...    those values, in this order (default: every value that has a csv row for one
                of the columns, in file order).
  labels=L,...  the row labels printed (default: the values of `rows`).
  pivot=COL     the csv column whose values are the table's column blocks (default `metric`).
  metrics=V,... the pivot values. A plain `V` gives one table column per field of `columns`; an
                item `V@FIELD` gives the one column FIELD of V.
  columns=F,... the fields (default `mean_ci`), see FIELDS.
  match=TPL     the csv row of a cell has `by` = TPL with `{row}` replaced by the row value and
                `{col}` by the pivot value; with `{col}` in TPL the pivot column is not matched
                (noise settings x methods, in groups "mnist1d cnn1d 20% symmetric noise: CE";
                then pick the metric with where=), without it the pivot is matched as usual.
                A `*` of TPL stands for any text (`{row} {col} (from *)`: runs fine-tuned from
                a warm-up named after the row); `*` in a row or pivot value is literal.
  where=C:V,... keep only the csv rows whose column C is V.
  baseline=B    the comparison that the Δ fields read, where a cell has several (strength's Δ
                against CE and against the peak); `{row}` in B is replaced by the row value
                (`match="{row} + TS" baseline="{row}"`: each method with TS against itself).
  digits=N,V:N  decimals (default 3); `V:N` for the pivot value V only.
  header=H,...  the header row, the row-label column first (default: made from the names).

Value options: `where=` (must leave one csv row, or rows that agree on the field), `field=`,
`baseline=`, `digits=`.

FIELDS: `mean` 0.921; `mean_ci` 0.921 [0.916, 0.927] (95% Student-t CI over seeds); `std`; `n`;
`diff` +0.031 (paired mean difference with the baseline); `diff_ci` +0.031 [+0.025, +0.037];
`delta`, which is `diff_ci` prefixed with "n.d. " when the verdict is "no difference detected"
(the CI includes 0); `p` (paired t-test, 2 significant digits); `verdict` (the csv's words).
Negative numbers print with a minus sign (U+2212). A cell with no csv row is blank (a baseline's
own Δ); a table row or column with no csv row at all is an error, as is a cell that several csv
rows with different values could fill.
"""
import csv
import dataclasses
import math
import pathlib
import re
import shlex
from typing import Iterable, Optional

from ls_jax.experiments import runs

MINUS = "\u2212"
DIFF_FIELDS = ("diff", "diff_ci", "delta", "p", "verdict")
MEAN_FIELDS = ("mean", "mean_ci", "std", "n")
FIELDS = MEAN_FIELDS + DIFF_FIELDS
DEFAULT_DIGITS = 3
NOT_DETECTED = "no difference detected"

TABLE = re.compile(r"(<!-- table:(?P<spec>.*?)-->)\n(?P<body>.*?)(?P<end><!-- /table -->)",
                   re.DOTALL)
VALUE = re.compile(r"(<!-- value:(?P<spec>.*?)-->)(?P<body>[^\n]*?)(?P<end><!-- /value -->)",
                   re.DOTALL)
TABLE_OPTIONS = ("by", "rows", "labels", "pivot", "metrics", "columns", "match", "where",
                 "baseline", "digits", "header")
VALUE_OPTIONS = ("where", "field", "baseline", "digits")


class PagesError(ValueError):
  """A directive that cannot be rendered; the message names the page and the line."""


def read_summary(path: str | pathlib.Path) -> list[dict[str, str]]:
  """The rows of a summary.csv, as dicts of strings."""
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def split_list(value: str) -> list[str]:
  """`a,b\\,c` -> ["a", "b,c"]; items are stripped."""
  return [item.replace("\\,", ",").strip() for item in re.split(r"(?<!\\),", value)]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
  """`PATH name=value ...` -> (PATH, {name: value})."""
  lexer = shlex.shlex(spec, posix=True)
  lexer.whitespace_split = True
  lexer.escape = ""
  try:
    words = list(lexer)
  except ValueError as e:
    raise PagesError(f"cannot split the directive: {e}") from None
  if not words:
    raise PagesError("the directive names no csv file")
  options = {}
  for word in words[1:]:
    name, sep, value = word.partition("=")
    if not sep:
      raise PagesError(f"{word!r} is not name=value")
    if name in options:
      raise PagesError(f"option {name!r} given twice")
    options[name] = value
  return words[0], options


def parse_where(value: Optional[str]) -> dict[str, str]:
  where = {}
  for item in split_list(value) if value else []:
    column, sep, wanted = item.partition(":")
    if not sep:
      raise PagesError(f"where item {item!r} is not COLUMN:VALUE")
    where[column.strip()] = wanted.strip()
  return where


def _float(text: str) -> Optional[float]:
  if text is None or text.strip() == "":
    return None
  value = float(text)
  return None if math.isnan(value) else value


def format_number(value: Optional[float], digits: int, signed: bool = False) -> str:
  """The reports' one rounding (`runs.format_number`), typeset: U+2212 for minus."""
  return runs.format_number(value, digits, sign=signed).replace("-", MINUS)


def format_field(row: dict[str, str], field: str, digits: int) -> str:
  """One field of one csv row, as printed in a page."""
  if field not in FIELDS:
    raise PagesError(f"unknown field {field!r}; fields: {', '.join(FIELDS)}")
  if field == "n":
    return row["n"]
  if field == "verdict":
    return row["verdict"]
  if field == "p":
    p = _float(row["p_value"])
    return "" if p is None else f"{p:.2g}".replace("-", MINUS)
  if field in ("mean", "std"):
    return format_number(_float(row[field]), digits)
  if field == "mean_ci":
    mean = format_number(_float(row["mean"]), digits)
    low, high = _float(row["ci_low"]), _float(row["ci_high"])
    if low is None or high is None:
      return mean
    return f"{mean} [{format_number(low, digits)}, {format_number(high, digits)}]"
  diff = _float(row["diff"])
  if diff is None:
    return ""
  text = format_number(diff, digits, signed=True)
  if field == "diff":
    return text
  low, high = _float(row["diff_ci_low"]), _float(row["diff_ci_high"])
  if low is not None and high is not None:
    text += f" [{format_number(low, digits, True)}, {format_number(high, digits, True)}]"
  if field == "delta" and row["verdict"].startswith(NOT_DETECTED):
    text = "n.d. " + text
  return text


def _matching(rows: list[dict[str, str]],
              wanted: dict[str, str | re.Pattern]) -> list[dict[str, str]]:
  """The csv rows whose column C equals `wanted[C]`, or fully matches it if it is a pattern."""
  for column in wanted:
    if rows and column not in rows[0]:
      raise PagesError(f"the csv has no column {column!r}; it has {', '.join(rows[0])}")
  return [row for row in rows if all(v.fullmatch(row[c]) if isinstance(v, re.Pattern)
                                     else row[c] == v for c, v in wanted.items())]


def _cell_pattern(template: str, row_value: str, column_value: str) -> re.Pattern:
  """match=: `{row}` and `{col}` replaced, each `*` of the template standing for any text."""
  return re.compile(".*".join(
      re.escape(piece.replace("{row}", row_value).replace("{col}", column_value))
      for piece in template.split("*")))


def pick(candidates: list[dict[str, str]], field: str, baseline: Optional[str],
         digits: int, what: str) -> str:
  """The text of `field` over the csv rows that match one cell ("" when none applies)."""
  if field in DIFF_FIELDS:
    if baseline is not None:
      candidates = [row for row in candidates if row["baseline"] == baseline]
    else:
      candidates = [row for row in candidates if row["baseline"]]
    baselines = sorted({row["baseline"] for row in candidates})
    if len(baselines) > 1:
      raise PagesError(f"{what}: compared with several baselines ({'; '.join(baselines)}); "
                       "say which with baseline=")
  texts = {format_field(row, field, digits) for row in candidates}
  if len(texts) > 1:
    raise PagesError(f"{what}: several csv rows with different {field}: {sorted(texts)}")
  return texts.pop() if texts else ""


@dataclasses.dataclass(frozen=True)
class Column:
  value: str  # The pivot value.
  field: str


def _digits(option: Optional[str]) -> tuple[int, dict[str, int]]:
  default, per_value = DEFAULT_DIGITS, {}
  for item in split_list(option) if option else []:
    name, sep, number = item.rpartition(":")
    try:
      if sep:
        per_value[name.strip()] = int(number)
      else:
        default = int(number)
    except ValueError:
      raise PagesError(f"digits item {item!r} is not N or VALUE:N") from None
  return default, per_value


def _default_header(column: Column) -> str:
  return {"mean": column.value, "mean_ci": column.value, "std": f"{column.value} std",
          "n": "n", "diff": f"Δ {column.value}", "diff_ci": f"Δ {column.value}",
          "delta": f"Δ {column.value}", "p": f"p ({column.value})",
          "verdict": f"{column.value} verdict"}[column.field]


def render_table(rows: list[dict[str, str]], options: dict[str, str]) -> str:
  """The markdown table (header, rule, one line per row, each ending in a newline)."""
  unknown = sorted(set(options) - set(TABLE_OPTIONS))
  if unknown:
    raise PagesError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(TABLE_OPTIONS)}")
  by = options.get("by", "group")
  pivot = options.get("pivot", "metric")
  template = options.get("match")
  rows = _matching(rows, parse_where(options.get("where")))
  if rows and by not in rows[0]:
    raise PagesError(f"the csv has no column {by!r} (by=); it has {', '.join(rows[0])}")
  fields = split_list(options.get("columns", "mean_ci"))
  if "metrics" not in options:
    raise PagesError("metrics= is required (the values of the pivot column)")
  columns = []
  for item in split_list(options["metrics"]):
    value, sep, field = item.rpartition("@")
    columns += [Column(value, field)] if sep else [Column(item, f) for f in fields]
  if "rows" in options:
    row_values = split_list(options["rows"])
  elif template is None:  # Every value that has a csv row for one of the columns.
    if rows and pivot not in rows[0]:
      raise PagesError(f"the csv has no column {pivot!r} (pivot=); it has {', '.join(rows[0])}")
    wanted = {column.value for column in columns}
    row_values = list(dict.fromkeys(row[by] for row in rows if row[pivot] in wanted))
  else:
    raise PagesError("match= needs rows=")
  labels = split_list(options["labels"]) if "labels" in options else row_values
  if len(labels) != len(row_values):
    raise PagesError(f"{len(labels)} labels for {len(row_values)} rows")
  for column in columns:
    if column.field not in FIELDS:
      raise PagesError(f"unknown field {column.field!r}; fields: {', '.join(FIELDS)}")
  default_digits, digits = _digits(options.get("digits"))
  header = (split_list(options["header"]) if "header" in options
            else [by] + [_default_header(c) for c in columns])
  if len(header) != len(columns) + 1:
    raise PagesError(f"header= has {len(header)} names for {len(columns) + 1} columns")
  baseline = options.get("baseline")

  body, filled_columns = [], set()
  for row_value, label in zip(row_values, labels):
    cells, found = [], False
    for i, column in enumerate(columns):
      if template is None:
        wanted = {by: row_value, pivot: column.value}
      else:
        wanted = {by: _cell_pattern(template, row_value, column.value)}
        if "{col}" not in template:
          wanted[pivot] = column.value
      candidates = _matching(rows, wanted)
      found = found or bool(candidates)
      row_baseline = None if baseline is None else baseline.replace("{row}", row_value)
      text = pick(candidates, column.field, row_baseline,
                  digits.get(column.value, default_digits),
                  f"row {row_value!r}, column {column.value!r} {column.field}")
      if candidates:
        filled_columns.add(i)
      cells.append(text)
    if not found:
      raise PagesError(f"no csv row for the table row {row_value!r}")
    body.append(cells)
  for i, column in enumerate(columns):
    if i not in filled_columns:
      raise PagesError(f"no csv row for the table column {column.value!r} ({column.field})")
  lines = [_line(header), "|" + "---|" * len(header)]
  lines += [_line([label] + cells) for label, cells in zip(labels, body)]
  return "".join(line + "\n" for line in lines)


def _line(cells: list[str]) -> str:
  return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def render_value(rows: list[dict[str, str]], options: dict[str, str]) -> str:
  """One field of the csv rows that `where=` selects."""
  unknown = sorted(set(options) - set(VALUE_OPTIONS))
  if unknown:
    raise PagesError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(VALUE_OPTIONS)}")
  field = options.get("field", "mean")
  candidates = _matching(rows, parse_where(options.get("where")))
  if not candidates:
    raise PagesError(f"no csv row matches where={options.get('where')!r}")
  default_digits, _ = _digits(options.get("digits"))
  text = pick(candidates, field, options.get("baseline"), default_digits,
              f"value where={options.get('where')!r}")
  if not text:
    raise PagesError(f"where={options.get('where')!r} has no {field}")
  return text


def update_text(text: str, root: pathlib.Path, name: str = "<text>") -> str:
  """`text` with every table and value directive re-rendered from its csv under `root`."""
  cache: dict[str, list[dict[str, str]]] = {}

  def load(path: str) -> list[dict[str, str]]:
    if path not in cache:
      if not (root / path).is_file():
        raise PagesError(f"no file {path}")
      cache[path] = read_summary(root / path)
    return cache[path]

  def substitute(pattern, render, source):
    def one(match):
      line = source.count("\n", 0, match.start()) + 1
      try:
        path, options = parse_spec(match.group("spec"))
        rendered = render(load(path), options)
      except (PagesError, KeyError, ValueError) as e:
        raise PagesError(f"{name}:{line}: {e}") from None
      return match.group(0)[:match.start("body") - match.start()] + rendered + match.group("end")
    return pattern.sub(one, source)

  text = substitute(TABLE, render_table, text)
  return substitute(VALUE, render_value, text)


def pages(root: pathlib.Path) -> list[pathlib.Path]:
  """The pages that may hold directives: README.md and docs/**/*.md."""
  found = [root / "README.md"] if (root / "README.md").is_file() else []
  return found + sorted((root / "docs").rglob("*.md"))


def update_pages(root: pathlib.Path, paths: Optional[Iterable[pathlib.Path]] = None,
                 write: bool = True) -> list[pathlib.Path]:
  """Re-renders every page; returns those whose text changed (rewritten when `write`)."""
  changed = []
  for path in pages(root) if paths is None else paths:
    text = path.read_text(encoding="utf-8")
    new = update_text(text, root, str(path.relative_to(root)))
    if new != text:
      changed.append(path)
      if write:
        path.write_text(new, encoding="utf-8")
  return changed
