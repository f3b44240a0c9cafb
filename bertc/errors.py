"""One exception type for everything a user can get wrong; the message carries the fix."""


class BertcError(Exception):
    """A user-facing error: bad input, unsupported model, missing tool, corrupt artifact."""
