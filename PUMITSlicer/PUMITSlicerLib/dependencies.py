"""Python dependencies of the pumit process, installed on request and only with the user's consent.

* torch through the PyTorch extension's ``PyTorchUtils`` (it picks a CUDA build matching the GPU
  driver; a plain ``pip install torch`` may install a CPU-only build),
* everything else from ``Resources/requirements.txt`` (and ``requirements-train.txt`` for
  fine-tuning) with ``slicer.packaging.pip_ensure`` (Slicer >= 5.11) or ``slicer.util.pip_install``,
* the ``pumit`` package itself is not installed: it ships inside the extension and is put on the
  child process's ``PYTHONPATH`` (see :func:`PUMITSlicerLib.logic.bundledPackageDir`).

Nothing here runs at import or module construction: the widget calls :func:`ensureDependencies`
when the user presses a run button. Checking never imports torch into Slicer.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

TORCH_VERSION_REQUIREMENT = ">=2.4"
TORCH_REQUIREMENT = "torch" + TORCH_VERSION_REQUIREMENT
RESOURCES = Path(__file__).resolve().parent.parent / "Resources"


def requirementFiles(training: bool = False) -> list[Path]:
    """``requirements.txt`` (+ ``requirements-train.txt`` for fine-tuning) of the module's resources."""
    return [RESOURCES / "requirements.txt"] + ([RESOURCES / "requirements-train.txt"] if training else [])


def requirementLines(training: bool = False) -> list[str]:
    """Requirement strings of :func:`requirementFiles`, comments removed."""
    lines = []
    for path in requirementFiles(training):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def _satisfied(requirement: str) -> bool:
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return req.specifier.contains(version, prereleases=True)


def missingDependencies(training: bool = False) -> list[str]:
    """Requirements not yet satisfied in Slicer's Python (torch first), without importing them."""
    return [r for r in [TORCH_REQUIREMENT] + requirementLines(training) if not _satisfied(r)]


def installSteps(training: bool = False) -> list[str]:
    """What :func:`ensureDependencies` would install, one line per step (empty: nothing missing)."""
    missing = missingDependencies(training)
    steps = []
    if TORCH_REQUIREMENT in missing:
        steps.append("PyTorch (through the PyTorch extension, with the CUDA build matching the GPU driver; several GB)")
    others = [r for r in missing if r != TORCH_REQUIREMENT]
    if others:
        steps.append("Python packages: " + ", ".join(others))
    return steps


def ensureDependencies(confirm: Callable[[str], bool], training: bool = False,
                       progress: Callable[[int, int, str], None] | None = None) -> bool:
    """Install what is missing after ``confirm(message)`` returned True. Returns True when all is installed.

    ``confirm`` is the widget's dialog (e.g. ``slicer.util.confirmOkCancelDisplay``); ``progress(step,
    steps, text)`` is called before each install step and once at the end (``step == steps``), so the widget
    can show a progress dialog (pip's own output goes to Slicer's Python console).
    """
    steps = installSteps(training)
    if not steps:
        return True
    missing = missingDependencies(training)
    message = (
        "PUMITSlicer needs these Python packages, which will be downloaded and installed into Slicer's "
        "Python (several GB for PyTorch with GPU support; this can take minutes):\n\n  "
        + "\n  ".join(missing)
        + "\n\nInstall now?"
    )
    if not confirm(message):
        logger.info("Installation of the PUMITSlicer dependencies declined")
        return False
    import slicer

    report = progress or (lambda step, total, text: logger.info("[%d/%d] %s", step + 1, total, text))
    step = 0
    if not _satisfied(TORCH_REQUIREMENT):
        report(step, len(steps), "Installing " + steps[step])
        step += 1
        try:
            import PyTorchUtils
        except ImportError as e:
            raise RuntimeError("The PyTorch extension is required: install 'PyTorch' from the Extensions Manager "
                               "and restart Slicer.") from e
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION_REQUIREMENT) is None:
            return False
    if any(not _satisfied(r) for r in requirementLines(training)):
        report(step, len(steps), "Installing " + steps[step])
        step += 1
        try:
            from slicer import packaging
        except ImportError:  # Slicer < 5.11
            slicer.util.pip_install([r for r in requirementLines(training) if not _satisfied(r)])
        else:
            requirements = []
            for path in requirementFiles(training):
                requirements += packaging.load_requirements(path)
            packaging.pip_ensure(requirements, prompt_install=False, requester="PUMITSlicer")
    report(len(steps), len(steps), "Done")
    return not missingDependencies(training)
