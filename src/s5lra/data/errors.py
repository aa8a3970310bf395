"""The one exception for bad or missing data: the CLI prints its message and exits with code 2."""


class DataError(Exception):
    """A user-fixable data problem; the message names the file (and line) or key and what to do."""
