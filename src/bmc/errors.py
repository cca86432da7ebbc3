"""The exceptions that end a command, each carrying its exit code (SPEC section 8).

The CLI turns any `BmcError` into one sentence on stderr and its exit code; nothing else
in the package prints tracebacks at a user.
"""


class BmcError(Exception):
    """A failure the user can act on; `str(error)` is the one sentence they see."""

    exit_code = 1


class UserError(BmcError):
    """Bad input, a missing workspace, a refused API key, a held lock."""

    exit_code = 1


class PrerequisiteError(BmcError):
    """A gate or required file is missing: run the earlier skill first."""

    exit_code = 2


class ModelError(BmcError):
    """The model endpoint failed after retries; the session is saved and resumable."""

    exit_code = 3


class StoppedForPerson(BmcError):
    """A budget or a livelock stopped the run; a person should look, then resume."""

    exit_code = 4
