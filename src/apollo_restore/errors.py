"""The one exception type that the CLI turns into a one-line error message, and that line's shape."""

#: longest error message printed (a corrupt file can make a library's message huge)
MAX_MESSAGE_CHARS = 500


class ApolloError(Exception):
    """A user-facing error: bad input, missing file, bad config. Printed as one line, exit code 1."""


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (saying how many were left out)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ApolloWarning(UserWarning):
    """Something about the input a user should know (damaged or truncated data); the CLI prints it as one line."""
