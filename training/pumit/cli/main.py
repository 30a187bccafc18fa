"""Entry point of the ``pumit`` command: dispatches to sub-command modules.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)`` which adds its parser(s) and
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
User errors (:class:`pumit.errors.PumitError`) print one line ``pumit: error: ...`` and exit with the
error's code; see :mod:`pumit.errors` for the table of exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from pumit import __version__
from pumit.errors import CancelledError, PumitError

#: Sub-command modules under ``pumit.cli``, in the order they appear in ``pumit --help``.
COMMAND_MODULES: tuple[str, ...] = ("segment", "reconstruct", "classify", "models", "data", "train", "demo")

EPILOG = """exit codes: 0 success, 1 internal error (bug), 2 bad input or option, 3 model problem
(unknown id, checksum, wrong task), 4 out of memory/resources, 130 cancelled"""


def _wanted_command(argv: Sequence[str] | None) -> str | None:
    """The sub-command named by ``argv`` (its first word), or ``None`` (``pumit --help``, ``--version``, a typo)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return args[0] if args and args[0] in COMMAND_MODULES else None


def build_parser(argv: Sequence[str] | None = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``pumit`` parser. With ``lazy`` and a command in ``argv``, only that command's module is imported
    (start-up time: ``pumit segment`` does not import the model store or the training options); the other
    commands get placeholder parsers that are never used."""
    wanted = _wanted_command(argv) if lazy else None
    parser = argparse.ArgumentParser(
        prog="pumit",
        description="Spacing-aware universal medical image models: segment, reconstruct, classify, train, manage models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pumit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        if wanted is not None and name != wanted:
            sub.add_parser(name, add_help=False)
            continue
        module = importlib.import_module(f"pumit.cli.{name}")
        module.register(sub)
    return parser


def _raise_cancel(signum, frame):  # noqa: ARG001
    raise CancelledError("cancelled")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (also used by tests)."""
    for stream in (sys.stdout, sys.stderr):  # never crash printing a non-ASCII message in a C/ASCII locale
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser(argv, lazy=True)
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGTERM") and argv is None:
        signal.signal(signal.SIGTERM, _raise_cancel)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pumit: cancelled", file=sys.stderr)
        return CancelledError.exit_code
    except PumitError as e:
        print(f"pumit: error: {e}", file=sys.stderr)
        if os.environ.get("PUMIT_DEBUG"):
            raise
        return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
