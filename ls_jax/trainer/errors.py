"""The one exception type that the entry point turns into a one-line message."""


class UserError(Exception):
  """A problem the user can fix (config, data, workdir); printed as one line, no traceback."""


def one_line(error: BaseException) -> str:
  """The line of an exception's message that says what went wrong, for a one-line report.

  The last line when the message embeds a traceback (config_flags does), else the first line.
  """
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  return lines[-1] if any(line.startswith("Traceback") for line in lines) else lines[0]


class NonFiniteLoss(UserError):
  """Training or evaluation met a non-finite loss, gradient or output (`config.nonfinite_loss`)."""
