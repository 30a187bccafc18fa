"""The .ui file matches the code: every widget the widget class uses exists, every SlicerParameterName
is a parameter of the typed parameter node, and each bound widget suits its parameter's type."""

from __future__ import annotations

import re
import typing
import xml.etree.ElementTree as ET

import pytest
from pumitslicer_testing import REPO

MODULE_DIR = REPO / "PUMITSlicer"
UI = ET.parse(MODULE_DIR / "Resources" / "UI" / "PUMITSlicer.ui").getroot()
WIDGETS = {w.get("name"): w for w in UI.iter("widget")}


def prop(widget, name):
    p = next((p for p in widget.findall("property") if p.get("name") == name), None)
    if p is None:
        return None
    child = p[0]
    return [s.text for s in child] if child.tag == "stringlist" else child.text


@pytest.fixture(scope="module")
def module():
    import PUMITSlicer

    return PUMITSlicer


def test_every_widget_used_in_code_exists():
    source = (MODULE_DIR / "PUMITSlicer.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    used |= set(re.findall(r'\("(\w+(?:Button))", _\("', source))  # RUNS table: button names
    assert {"segmentButton", "reconstructButton", "fineTuneButton"} <= used
    missing = sorted(used - WIDGETS.keys())
    assert not missing, f"widgets used in PUMITSlicer.py but absent from the .ui: {missing}"


def test_parameter_bindings_match_the_parameter_node(module):
    hints = typing.get_type_hints(module.PUMITSlicerParameterNode, include_extras=True)
    bound = {prop(w, "SlicerParameterName"): w for w in WIDGETS.values() if prop(w, "SlicerParameterName")}
    assert set(bound) <= set(hints), f"unknown parameters bound in the .ui: {set(bound) - set(hints)}"
    assert {"inputVolume", "outputSegmentation", "device", "overlap", "fineTuneEpochs", "fineTuneName"} <= set(bound)
    for name, widget in bound.items():
        hint = hints[name]
        base, extras = (typing.get_args(hint)[0], typing.get_args(hint)[1:]) if typing.get_origin(hint) is typing.Annotated else (hint, ())
        cls = widget.get("class")
        if isinstance(base, type) and base.__name__.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox" and prop(widget, "nodeTypes") == [base.__name__], name
        elif any(hasattr(e, "choices") for e in extras):
            choices = next(e.choices for e in extras if hasattr(e, "choices"))
            items = [i.find("property/string").text for i in widget.findall("item")]
            assert cls == "QComboBox" and items == choices, name
        elif base is bool:
            assert cls == "QCheckBox", name
        elif base in (int, float):
            assert cls in ("QSpinBox", "QDoubleSpinBox", "ctkSliderWidget"), name
            limits = next((e for e in extras if hasattr(e, "minimum")), None)
            if limits is not None:
                assert float(prop(widget, "minimum")) == limits.minimum and float(prop(widget, "maximum")) == limits.maximum, name
        elif base is str:
            assert cls == "QLineEdit", name


def test_widget_defaults_match_parameter_defaults(module, session):
    """What the .ui shows before a parameter node is bound equals the parameter's default."""
    import slicer

    defaults = module.PUMITSlicerParameterNode(session.scene.AddNode(slicer.vtkMRMLScriptedModuleNode()))
    compared = set()
    for widget in WIDGETS.values():
        name = prop(widget, "SlicerParameterName")
        default = getattr(defaults, name) if name else None
        if default is None or isinstance(default, (list, slicer.vtkMRMLNode)) or default == "":
            continue
        shown = widget.find("item/property/string").text if widget.get("class") == "QComboBox" else \
            prop(widget, "value") or prop(widget, "checked")
        if isinstance(default, bool):
            assert shown == str(default).lower(), name
        else:
            assert type(default)(shown) == default, name
        compared.add(name)
    assert {"device", "overlap", "swBatch", "computeErrorMap", "fineTuneEpochs", "modality"} <= compared


def test_node_selectors_receive_the_scene():
    receivers = {c.findtext("receiver") for c in UI.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    selectors = {n for n, w in WIDGETS.items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors <= receivers


def test_widget_class_follows_the_template(module):
    """The Widget only uses Qt inside methods, so the module imports without the application."""
    assert set(module.PUMITSlicerWidget.RUNS) == {"segment", "reconstruct", "finetune"}
    assert WIDGETS["PUMITSlicer"].get("class") == "qMRMLWidget"
