"""User-facing error types and the command line's exit codes.

Every error a user can cause (bad file, bad spacing, unknown model, ...) is raised as a
:class:`PumitError` subclass whose message is one line naming the problem. The CLI prints the
message (no traceback) and exits with the class's ``exit_code``.

Exit codes (documented in the README):

====  ==================================================================
0     success
1     unexpected internal error (a bug: please report with the traceback)
2     bad input: unreadable/corrupt file, wrong shape, bad spacing, bad option
3     model problem: unknown model id, checksum mismatch, wrong task
4     out of resources: out of memory even after the automatic fallbacks
130   cancelled (SIGINT / SIGTERM)
====  ==================================================================
"""

from __future__ import annotations


class PumitError(Exception):
    """Base class of errors caused by user input or environment, not by a bug."""

    exit_code = 1


class InputError(PumitError, ValueError):
    """A bad input file, array, spacing or option (exit code 2)."""

    exit_code = 2


class ModelError(PumitError):
    """Unknown model, corrupt/mismatching checkpoint, or a model of the wrong task (exit code 3)."""

    exit_code = 3


class ResourceError(PumitError):
    """Out of memory or another resource even after the fallbacks (exit code 4)."""

    exit_code = 4


class CancelledError(PumitError):
    """The user cancelled the job (exit code 130)."""

    exit_code = 130
