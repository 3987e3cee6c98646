"""Fresh venvs that see this interpreter's packages, so tests can install into them offline."""
import pathlib
import subprocess
import sys
import sysconfig


def create(venv: pathlib.Path) -> pathlib.Path:
  """A venv at `venv`, without pip, whose path ends with this interpreter's site-packages.

  A `.pth` file adds them; the venv's own site-packages stays first, so whatever is installed into
  the venv shadows this interpreter's copy. `python -m pip` works (pip comes from here) and installs
  into the venv. Returns the venv's python.
  """
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  python = venv / "bin" / "python"
  site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
  (pathlib.Path(site) / "test_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
  return python
