"""The `migrate` command: a thin shell over the library.

One boundary (`main`) turns exceptions into exit codes and one-line messages
on stderr. Each command lives with its stage and registers itself through a
`register(subparsers)` function that sets `func` on its parser; `func(args)`
returns an `ExitStatus`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import Sequence

from migrate import __version__
from migrate.errors import ExitStatus, MigrateError
from migrate.redact import redact

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "migrate.stack.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrate",
        description="Move Supabase Storage objects to S3 without losing a byte, and prove it.",
    )
    parser.add_argument("--version", action="version", version=f"migrate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (secrets are masked)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # botocore and urllib3 are chatty and can log request headers at DEBUG.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def error_line(err: BaseException) -> str:
    """The one line a user sees for an error: `migrate: <message>`, secrets masked."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return redact(f"migrate: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `migrate` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        status = args.func(args)
    except KeyboardInterrupt:
        print("migrate: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except MigrateError as err:
        print(error_line(err), file=sys.stderr)
        return int(err.exit_status)
    except Exception as err:  # noqa: BLE001 - the one place that catches everything
        # A bug: the only case that shows a traceback, and still masked.
        print(redact("".join(traceback.format_exception(err))), file=sys.stderr)
        print(error_line(err) + " (internal error; please report it with the trace above)", file=sys.stderr)
        return int(ExitStatus.INTERNAL_ERROR)
    return int(status if status is not None else ExitStatus.OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
