"""Entry point: global options, command groups, and the one place errors become exit codes."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import traceback
from pathlib import Path

import click
from rich.console import Console

from kisystem import __version__, interrupts
from kisystem.cli.context import AppContext
from kisystem.errors import ConfigError, KisystemError, describe_os_error
from kisystem.paths import CONFIG_ENV, DB_ENV, DEBUG_ENV, HOME_ENV, Paths

PATH = click.Path(path_type=Path)
PIPED_WIDTH = 120  # tables stay readable in logs and CI output, where rich would assume 80


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kisystem")
@click.option("--home", type=PATH, envvar=HOME_ENV,
              help=f"kisystem home directory [env {HOME_ENV}; default ~/.kisystem].")
@click.option("--db", type=PATH, envvar=DB_ENV,
              help=f"Learning database file [env {DB_ENV}; default HOME/learning.db].")
@click.option("--config", "config_path", type=PATH, envvar=CONFIG_ENV,
              help=f"optimization_config.json to load [env {CONFIG_ENV}].")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, db: Path | None, config_path: Path | None) -> None:
    """kisystem: a learning build-and-optimize loop for local LLMs.

    Exit codes: 0 ok, 1 run-time failure (also a file or learning database that
    cannot be written: locked by another process, or read-only), 2 usage or config
    error, 3 backend unreachable, hanging or not starting (an embedded server's port
    taken), 4 model not found, 130 interrupted, 143/129 terminated by SIGTERM/SIGHUP.
    Every error is one line on stderr, never a traceback.
    """
    ctx.obj = AppContext(
        paths=Paths.resolve(home, db, config_path),
        console=Console(width=None if sys.stdout.isatty() else PIPED_WIDTH),
        err_console=Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH),
    )


def _register_commands() -> None:
    from kisystem.cli import feedback_cmd
    from kisystem.cli import bench_cmd, config_cmd, demo_cmd, meta_cmd, models_cmd, profile_cmd, run_cmd, tasks_cmd
    from kisystem.cli import ensemble_cmd, optimize_cmd, queue_cmd, schedule_cmd, stats_cmd
    from kisystem.cli import ray_cmd, serve_cmd

    cli.add_command(config_cmd.config_group)
    cli.add_command(models_cmd.models_group)
    cli.add_command(demo_cmd.demo)
    cli.add_command(tasks_cmd.tasks_group)
    cli.add_command(run_cmd.run)
    cli.add_command(bench_cmd.bench_group)
    cli.add_command(profile_cmd.profile_group)
    cli.add_command(meta_cmd.meta_group)
    cli.add_command(queue_cmd.queue_group)
    cli.add_command(feedback_cmd.feedback_group)
    cli.add_command(optimize_cmd.optimize_group)
    cli.add_command(schedule_cmd.schedule_group)
    cli.add_command(ensemble_cmd.ensemble_group)
    cli.add_command(serve_cmd.serve)
    cli.add_command(ray_cmd.ray_group)
    cli.add_command(stats_cmd.stats)
    bench_cmd.bench_group.add_command(meta_cmd.meta_scale_command)


def report(err: KisystemError) -> None:
    """Print one clear line per problem on stderr."""
    lines = err.problems if isinstance(err, ConfigError) else [str(err)]
    for line in lines:
        click.echo(f"error: {line}", err=True)


REDELIVER_AFTER_S = 0.05


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so every ``with`` block cleans up
    (served models stop, runs are recorded) as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    interrupts.note(f"terminated by {signal.Signals(signum).name}")
    raise Terminated(signum)


def _redeliver(unraisable: sys.UnraisableHookArgs) -> None:
    """A Ctrl-C, SIGTERM or SIGHUP that landed where Python cannot raise (an at-fork callback
    such as logging's, a ``__del__``) would be swallowed and the run go on: send it again, to
    land in the program proper.  Anything else goes to the default hook."""
    err = unraisable.exc_value
    if isinstance(err, KeyboardInterrupt):  # from another thread: sent from here, it would land right here again
        signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
        timer = threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    sys.__unraisablehook__(unraisable)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end kisystem as Ctrl-C does (:class:`Terminated`), never swallowed."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    sys.unraisablehook = _redeliver


def _interrupted(cause: BaseException | None) -> None:
    if isinstance(cause, Terminated):
        click.echo(f"error: terminated by {signal.Signals(cause.signum).name}", err=True)
        sys.exit(128 + cause.signum)
    click.echo("error: interrupted", err=True)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    install_signal_handlers()
    try:
        code = cli.main(args=argv, prog_name="kisystem", standalone_mode=False)
    except KisystemError as err:
        report(err)
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:  # click turns a KeyboardInterrupt into Abort
        _interrupted(err.__cause__)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except KeyboardInterrupt as err:
        _interrupted(err)
    except Exception as err:  # the last resort (OS, SQLite, anything untranslated): one line, never a traceback
        _last_resort(err)
    sys.exit(code if isinstance(code, int) else 0)


def _last_resort(err: BaseException) -> None:
    """An OS, SQLite or other error that no boundary translated: one line and exit 1."""
    if isinstance(err, OSError):
        message = describe_os_error(err)
    elif isinstance(err, sqlite3.Error):
        message = f"SQLite: {err}"
    else:
        message = f"unexpected {type(err).__name__}: {err}"
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(err)
    elif not isinstance(err, OSError | sqlite3.Error):
        message += f" (a bug: please report it; {DEBUG_ENV}=1 shows the traceback)"
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
