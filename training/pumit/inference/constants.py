"""Option values shared by the inference modules and the command line (no heavy imports here, so that
``pumit --help`` and the other commands do not pay for importing PyTorch and MONAI)."""

from __future__ import annotations

#: ``--precision`` values.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: ``--accumulate-on`` values: where the full-volume sliding-window result lives.
ACCUMULATE_MODES: tuple[str, ...] = ("auto", "device", "cpu")
#: ``--blend`` values: how overlapping windows are combined.
BLEND_MODES: tuple[str, ...] = ("gaussian", "constant")
#: ``--progress`` values.
PROGRESS_MODES: tuple[str, ...] = ("bar", "jsonl", "none")
#: ``--depth-axis`` values (numpy axes of SimpleITK's ``(z, y, x)`` array).
DEPTH_AXES: dict[str, int | None] = {"auto": None, "z": 0, "y": 1, "x": 2}
