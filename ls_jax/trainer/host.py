"""The machine a figure came from: every result and benchmark names its CPU."""
import pathlib
import platform


def cpu_model() -> str:
  """The host CPU's model name (Linux `/proc/cpuinfo`; elsewhere what `platform` knows)."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()
