"""Run the pumit CLI as if TensorBoard were not installed (as in 3D Slicer's Python).

``python without_tensorboard.py ARGS...`` = ``python -m pumit.cli.main ARGS...`` where importing
``tensorboard`` / ``tensorboardX`` fails with ``ModuleNotFoundError`` and their distribution metadata
is absent, which is what an environment without them looks like to Python, Lightning and pumit.
"""

import importlib.abc
import importlib.metadata
import runpy
import sys

HIDDEN = ("tensorboard", "tensorboardX")


def _hidden(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HIDDEN)


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _hidden(name):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


_distribution = importlib.metadata.distribution


def _distributionWithout(name):
    if _hidden(name):
        raise importlib.metadata.PackageNotFoundError(name)
    return _distribution(name)


def hide() -> None:
    """From now on ``tensorboard`` / ``tensorboardX`` cannot be imported and have no metadata."""
    for loaded in [m for m in sys.modules if _hidden(m)]:
        del sys.modules[loaded]
    sys.meta_path.insert(0, _Hide())
    importlib.metadata.distribution = _distributionWithout


if __name__ == "__main__":
    hide()
    sys.argv[0] = "pumit"
    runpy.run_module("pumit.cli.main", run_name="__main__", alter_sys=True)
