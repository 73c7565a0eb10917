"""The one exception type for mistakes a user can fix (bad input data, bad config, bad arguments)."""


class UserError(Exception):
    """Raised for problems the user can fix; the CLI prints the message without a traceback."""


class DataError(UserError):
    """Input data violates the data contract. The message names the file, the column and an example."""


class ConfigError(UserError):
    """A configuration key or value is unknown or has the wrong type."""


class StorageError(UserError):
    """The artifacts location cannot be written (read-only, full, gone). Nothing half-written is published: every
    artifact appears under its name only once completely written, and metrics.json (what marks a run finished)
    is written last."""
