"""Where kisystem keeps its files.

The kisystem home defaults to ``~/.kisystem`` and can be moved with ``--home`` or
``KISYSTEM_HOME``.  Everything else (the learning database, the model cache, logs,
workspaces) lives under it unless given explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "KISYSTEM_HOME"
DB_ENV = "KISYSTEM_DB"
CONFIG_ENV = "KISYSTEM_CONFIG"
SANDBOX_TOKEN_ENV = "KISYSTEM_SANDBOX_RUN"  # marks every process of one sandboxed run
TEST_HOME_ENV = "KISYSTEM_TEST_HOME"  # where the integration tests cache model weights
QUEUE_KILL_ENV = "KISYSTEM_QUEUE_KILL_AT"  # test hook: the queue runner dies at this step
SLOW_TESTS_ENV = "KISYSTEM_SLOW_TESTS"  # opt-in for the minutes-long tests
DEBUG_ENV = "KISYSTEM_DEBUG"  # an error no boundary translated also prints its traceback
DASHBOARD_TOKEN_ENV = "KISYSTEM_DASHBOARD_TOKEN"  # the secret `kisystem serve` needs off loopback
RESERVED_ENV = frozenset({HOME_ENV, DB_ENV, CONFIG_ENV, SANDBOX_TOKEN_ENV, TEST_HOME_ENV, QUEUE_KILL_ENV,
                          SLOW_TESTS_ENV, DEBUG_ENV, DASHBOARD_TOKEN_ENV})


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".kisystem"


@dataclass(frozen=True)
class Paths:
    """The resolved file locations for one kisystem invocation."""

    home: Path
    db: Path
    config: Path | None

    @classmethod
    def resolve(cls, home: Path | None = None, db: Path | None = None, config: Path | None = None) -> "Paths":
        home = (home or default_home()).expanduser()
        db = db or (Path(os.environ[DB_ENV]) if os.environ.get(DB_ENV) else home / "learning.db")
        if config is None and os.environ.get(CONFIG_ENV):
            config = Path(os.environ[CONFIG_ENV])
        return cls(home=home, db=db.expanduser(), config=config.expanduser() if config else None)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def locks_dir(self) -> Path:
        """Lock files shared by every kisystem process of this home (the generation gate's slots)."""
        return self.home / "locks"
