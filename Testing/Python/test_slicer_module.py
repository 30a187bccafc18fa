"""The scripted module as Slicer loads it: metadata, self-test, parameter node, packaging files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types

from PIL import Image
from pumitslicer_testing import HERE, REPO

MODULE_DIR = REPO / "PUMITSlicer"


def test_module_description():
    import PUMITSlicer

    parent = types.SimpleNamespace()
    PUMITSlicer.PUMITSlicer(parent)
    assert parent.title and parent.categories == ["Segmentation"] and parent.contributors
    assert "Cancel" in parent.helpText and "docs/slicer.md" in parent.helpText


def test_self_test_runs_on_a_real_scene(session):
    """The ScriptedLoadableModuleTest that ctest and 'Reload and Test' run."""
    import PUMITSlicer

    PUMITSlicer.PUMITSlicer(types.SimpleNamespace()).runTest()


def test_parameter_node_is_saved_in_the_scene(session, ctVolume):
    import PUMITSlicer

    logic = PUMITSlicer.PUMITSlicerLogic()
    params = logic.getParameterNode()
    assert (params.device, params.overlap, params.fineTuneEpochs, params.modality) == ("auto", 0.5, 20, "CT")
    params.inputVolume, params.modelId, params.overlap = ctVolume, "spine-v1.0.0", 0.25
    again = PUMITSlicer.PUMITSlicerLogic().getParameterNode()
    assert again.parameterNode is params.parameterNode, "one singleton parameter node per scene"
    assert (again.inputVolume, again.modelId, again.overlap) == (ctVolume, "spine-v1.0.0", 0.25)


def test_importing_the_module_runs_nothing_heavy():
    """No torch, no pumit, no process, no download at import or module construction."""
    code = (
        "import sys, types\n"
        f"sys.path[:0] = [{str(HERE / 'stubs')!r}, {str(MODULE_DIR)!r}]\n"
        "import subprocess\n"
        "subprocess.Popen = None\n"
        "import PUMITSlicer, PUMITSlicerLib.dependencies\n"
        "PUMITSlicer.PUMITSlicer(types.SimpleNamespace())\n"
        "bad = [m for m in ('torch', 'pumit', 'monai') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_no_removed_or_forbidden_imports():
    for path in MODULE_DIR.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*import imp\b|^\s*from imp import", text, re.MULTILINE), path
        assert "pip_install(" not in text or path.name == "dependencies.py", f"{path}: installs only in dependencies.py"


def test_cmake_lists_every_module_file_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "PUMITSlicer")
    for path in sorted(MODULE_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".png", ".ui", ".txt") and path.name != "CMakeLists.txt" \
                and "__pycache__" not in path.parts:
            assert str(path.relative_to(MODULE_DIR)) in cmake, f"{path} is not packaged"
    assert "slicer_add_python_unittest(SCRIPT PUMITSlicer.py)" in cmake
    top = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(PUMITSlicer)" in top and "find_package(Slicer REQUIRED)" in top


def test_extensions_index_entry_matches_cmake():
    entry = json.loads((REPO / "PUMITSlicer.json").read_text())
    allowed = {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision", "scm_type", "scm_url", "tier"}
    assert set(entry) <= allowed and {"$schema", "category", "scm_url"} <= set(entry)
    top = (REPO / "CMakeLists.txt").read_text()
    depends = re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', top).group(1).split(";")
    category = re.search(r'set\(EXTENSION_CATEGORY "([^"]*)"\)', top).group(1)
    assert entry["build_dependencies"] == depends == ["PyTorch"]
    assert entry["category"] == category and entry["tier"] in (1, 3, 5)


def test_icon_is_a_128_pixel_png():
    with Image.open(MODULE_DIR / "Resources" / "Icons" / "PUMITSlicer.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


def test_requirements_parse_and_exclude_torch():
    from packaging.requirements import Requirement
    from PUMITSlicerLib import dependencies

    for training in (False, True):
        names = [Requirement(line).name.lower() for line in dependencies.requirementLines(training)]
        assert names and "torch" not in names and "pumit" not in names
    assert isinstance(dependencies.missingDependencies(), list)


def test_bundled_package_is_found_in_the_source_tree():
    from PUMITSlicerLib.logic import PUMITLogic, bundledPackageDir

    assert bundledPackageDir() == REPO / "training"
    env = PUMITLogic().environment()
    assert env["PYTHONPATH"].split(":")[0] == str(REPO / "training") and env["PYTHONUNBUFFERED"] == "1"
