"""User-facing errors of the PUMITSlicer module and the meaning of the ``pumit`` command's exit codes."""

from __future__ import annotations


class PUMITSlicerError(RuntimeError):
    """A problem the user can fix (bad selection, bad input, a failed run).

    The message is one or two plain sentences shown as is in the module panel or an error popup.
    """


#: Exit codes of the ``pumit`` command (see ``pumit.errors``) and what they mean for a Slicer user.
EXIT_CODE_HINTS: dict[int, str] = {
    1: "Internal error in pumit (a bug; please report it with the Python console log)",
    2: "Bad input",
    3: "Model problem",
    4: "Out of memory: choose Device = CPU, lower 'Sliding-window batch', or close other programs using the GPU",
    130: "Cancelled",
}


#: How the pumit CLI starts the one stderr line that explains a failure.
ERROR_PREFIX = "pumit: error:"


def errorDetail(stderrLines: list[str]) -> str:
    """The explanation in a failed run's stderr: the last ``pumit: error: ...`` line, else the last
    non-empty line (e.g. a traceback's exception), else an empty string."""
    lines = [line.strip() for line in stderrLines if line.strip()]
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):].strip()
    return lines[-1] if lines else ""


def describeExitCode(returnCode: int) -> str:
    """Short explanation of a process exit code (negative on POSIX = killed by that signal)."""
    if returnCode in EXIT_CODE_HINTS:
        return EXIT_CODE_HINTS[returnCode]
    if returnCode == -9 or returnCode == 137:
        return "The process was killed (SIGKILL), most often because the computer ran out of memory"
    if returnCode < 0:
        return f"The process was stopped by signal {-returnCode}"
    return "The process failed"
