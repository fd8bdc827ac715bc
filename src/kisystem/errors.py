"""The kisystem error tree.

Every error a user can cause or meet derives from :class:`KisystemError`.  Each class
carries the process exit code the CLI uses for it, so the CLI turns any of them into one
clear line on stderr and that code (documented in the README):

    0  success
    1  run-time failure (a task failed, a phase crashed, an unexpected fault)
    2  usage error: bad command line, bad config file, bad task spec
    3  backend unreachable, hanging or answering with a server error
    4  model not found on its backend (a routing signal)
    130 interrupted (Ctrl-C)

Third-party exceptions (httpx, sqlite3, OSError) are translated at the boundary that
calls them; nothing else in the package raises them past that boundary.
"""

from __future__ import annotations


class KisystemError(Exception):
    """Base of every error kisystem reports to a user."""

    exit_code = 1


class UsageError(KisystemError):
    """The user asked for something malformed: bad option, file or value."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or environment override is invalid.

    ``problems`` holds one line per problem (key, bad value, allowed range).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class StoreError(KisystemError):
    """The learning database could not be opened, migrated or written."""


class BackendError(KisystemError):
    """A model backend failed to answer usefully."""

    exit_code = 3


class BackendUnreachable(BackendError):
    """Connection refused, DNS failure or similar: nothing is listening."""


class BackendTimeout(BackendError):
    """The backend did not answer within a connect, read or total budget."""

    def __init__(self, message: str, *, before_first_token: bool = True) -> None:
        super().__init__(message)
        self.before_first_token = before_first_token


class BackendResponseError(BackendError):
    """The backend answered with an HTTP error or an error inside its stream."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ModelNotFound(BackendError):
    """The backend does not have the requested model (HTTP 404): route elsewhere."""

    exit_code = 4

    def __init__(self, model: str, endpoint: str, detail: str = "") -> None:
        msg = f"model {model!r} not found at {endpoint}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.model = model
        self.endpoint = endpoint


class ModelPullError(KisystemError):
    """Fetching, assembling or verifying model weights failed."""
