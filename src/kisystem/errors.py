"""The kisystem error tree.

Every error a user can cause or meet derives from :class:`KisystemError`.  Each class
carries the process exit code the CLI uses for it, so the CLI turns any of them into one
clear line on stderr and that code (documented in the README):

    0  success
    1  run-time failure (a task failed, a phase crashed, a file or the learning
       database cannot be written: locked by another process or read-only)
    2  usage error: bad command line, bad config file, bad task spec
    3  backend unreachable, hanging, answering with a server error, or an embedded
       server that cannot start (its port taken)
    4  model not found on its backend (a routing signal)
    130 interrupted (Ctrl-C)

Third-party exceptions (httpx, sqlite3, OSError, llama.cpp's RuntimeError) are translated
at the boundary that calls them; nothing else in the package raises them past that
boundary.  What still escapes is turned into one line by the CLI's ``main`` as a last
resort (exit 1), never a traceback.
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


class DatabaseUnavailable(StoreError):
    """The learning database cannot be written now: locked by another process, or read-only.

    Raised where a write transaction fails; the first ``db.translate`` it passes adds what
    kisystem was doing (``in_context``), so the line says both what and why.
    """

    def __init__(self, message: str, *, context_added: bool = False) -> None:
        super().__init__(message)
        self.context_added = context_added

    def in_context(self, what: str) -> "DatabaseUnavailable":
        if self.context_added:
            return self
        return type(self)(f"{what}: {self}", context_added=True)


class DatabaseLocked(DatabaseUnavailable):
    """Another process held the write lock for longer than the busy timeout."""


class DatabaseReadOnly(DatabaseUnavailable):
    """The file or its file system is read-only: reads work, writes cannot."""


def describe_os_error(err: OSError) -> str:
    """``PATH: reason`` without Python's ``[Errno N]`` noise, e.g. ``/x/home/logs: not a directory``."""
    reason = (err.strerror or str(err)).lower()
    names = [str(name) for name in (err.filename, err.filename2) if name is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


class BackendError(KisystemError):
    """A model backend failed to answer usefully."""

    exit_code = 3


class BackendUnreachable(BackendError):
    """Connection refused, DNS failure or similar: nothing is listening."""


class ServerStartError(BackendError):
    """An embedded llama.cpp server could not start (its port taken, the model not loadable)."""


class BackendTimeout(BackendError):
    """The backend did not answer within a connect, read or total budget."""

    def __init__(self, message: str, *, before_first_token: bool = True) -> None:
        super().__init__(message)
        self.before_first_token = before_first_token


class BackendSilent(BackendTimeout):
    """The backend took the request but sent no token within the first-token budget (hung or
    overloaded); not retried, since a hung server would hang the retry too."""


class BackendCooledDown(BackendError):
    """The backend failed repeatedly and is skipped until its cooldown ends."""


class PromptTooLong(KisystemError):
    """A prompt leaves no room for an answer in the model's context (measured before sending)."""

    def __init__(self, model: str, tokens: int, context: int, *, exact: bool = True) -> None:
        counted = "" if exact else " (estimated)"
        super().__init__(f"the prompt of {tokens} tokens{counted} does not fit {model}'s context of "
                         f"{context} tokens with room for an answer")
        self.model = model
        self.tokens = tokens
        self.context = context


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
