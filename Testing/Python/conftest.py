"""pytest fixtures for the PUMITSlicer extension: a real MRML scene with Slicer's module logics
(see :mod:`pumitslicer_testing`)."""

from __future__ import annotations

import sys

import pytest
from pumitslicer_testing import DATA, STANDIN, SlicerSession


@pytest.fixture
def session() -> SlicerSession:
    """A new MRML scene with logics, installed as ``slicer.mrmlScene`` / ``slicer.modules``."""
    s = SlicerSession()
    s.install()
    yield s
    s.scene.Clear(1)


@pytest.fixture
def logic(session, tmp_path, monkeypatch):
    """The module's logic on the session scene; child processes use this interpreter and a private
    model store (``PUMIT_HOME``)."""
    import PUMITSlicer

    monkeypatch.setenv("PUMIT_HOME", str(tmp_path / "pumit_home"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return PUMITSlicer.PUMITSlicerLogic()


@pytest.fixture
def ctVolume(session):
    return session.loadVolume(DATA / "sub-ct_label-22_ct.nii.gz", "ct")


@pytest.fixture
def standin(logic):
    """The logic running ``pumit_standin.py`` (the CLI contract with a known answer) instead of pumit."""
    logic.pumitCommand = [sys.executable, str(STANDIN)]
    return logic
