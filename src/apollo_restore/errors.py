"""The one exception type that the CLI turns into a one-line error message."""


class ApolloError(Exception):
    """A user-facing error: bad input, missing file, bad config. Printed as one line, exit code 1."""
