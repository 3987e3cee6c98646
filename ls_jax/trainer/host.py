"""The machine a figure came from: every result and benchmark names its CPU."""
import pathlib
import platform


def cpu_model() -> str:
  """The host CPU's model name with its family and model numbers (Linux `/proc/cpuinfo`; elsewhere
  what `platform` knows), e.g. "AMD EPYC (family 26, model 2)".

  Virtual machines often report a bare "AMD EPYC" for several generations, whose vector units
  differ; XLA compiles for the host's, so bit-identical results need the same numbers too.
  """
  try:
    fields = {}
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      fields.setdefault(key.strip(), value.strip())
    if "model name" in fields:
      numbers = [f"{name} {fields[key]}" for name, key in (("family", "cpu family"),
                                                           ("model", "model")) if key in fields]
      return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")
  except OSError:
    pass
  return platform.processor() or platform.machine()
