"""The one exception type that the entry point turns into a one-line message."""


class UserError(Exception):
  """A problem the user can fix (config, data, workdir); printed as one line, no traceback."""
