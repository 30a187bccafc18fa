"""PUMIT: spatially adaptive universal medical image foundation models.

Conventions used everywhere in this package (see :mod:`pumit.spacing`):

* Image tensors are ``(B, C, D, H, W)``; ``D`` is the slice (depth) axis.
* Spacing is in millimetres as ``(thickness, in-plane H, in-plane W)``.
* A 2D image is ``D = 1`` with a very large thickness (:data:`pumit.spacing.PLANAR_THICKNESS`).

Nothing in this package imports 3D Slicer.
"""

__version__ = "0.1.0"
