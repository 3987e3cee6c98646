"""Helpers shared by the config files (not a config itself)."""
import difflib

import ml_collections


def parse_arg(arg: str, **defaults) -> ml_collections.ConfigDict:
  """Parses the `:a=b,c` suffix of `--config=configs/x.py:...` (as big_vision's `parse_arg`).

  A bare first item sets the first default (`:mlp` == `:model=mlp`); a bare boolean name sets it
  (`:runlocal`). Types follow the defaults. Unknown names are an error naming the valid ones.
  """
  options = dict(defaults)
  names = list(defaults)
  for position, item in enumerate(filter(None, (arg or "").split(","))):
    key, has_value, value = item.partition("=")
    if not has_value:
      if isinstance(defaults.get(key), bool):
        key, value = key, "true"
      elif position == 0:
        key, value = names[0], item
      else:
        raise ValueError(f"config argument {item!r}: expected name=value; names: {names}")
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; valid: {names}")
    default = defaults[key]
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r}: expected true or false")
      options[key] = value.lower() in ("true", "1")
    else:
      options[key] = type(default)(value)
  return ml_collections.ConfigDict(options)


def pick_variant(variant: str, choices: dict, config_file: str, flags=("runlocal",)):
  """`choices[variant]`, or a ValueError naming the valid variants and flags (`:mlp,runlocal`).

  A misspelt flag in first position reads as a variant, so the error suggests the closest of both.
  """
  if variant not in choices:
    close = difflib.get_close_matches(variant, [*choices, *flags], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{config_file}: unknown variant {variant!r}{hint}; variants: "
                     f"{', '.join(choices)}; flags: {', '.join(flags)}")
  return choices[variant]
