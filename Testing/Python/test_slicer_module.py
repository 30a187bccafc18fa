"""The scripted module as Slicer loads it: metadata, self-test, parameter node, packaging files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types

import pytest
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
    from pumit.inference.settings import InferenceSettings

    # the module's overlap is pumit's measured default (0.25), not an older value of its own
    assert (params.device, params.overlap, params.fineTuneEpochs, params.modality) == (
        "auto", InferenceSettings().overlap, 20, "CT")
    params.inputVolume, params.modelId, params.overlap = ctVolume, "spine-v1.0.0", 0.4
    again = PUMITSlicer.PUMITSlicerLogic().getParameterNode()
    assert again.parameterNode is params.parameterNode, "one singleton parameter node per scene"
    assert (again.inputVolume, again.modelId, again.overlap) == (ctVolume, "spine-v1.0.0", 0.4)


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


#: The extension's GitHub repository (a placeholder until it exists); the Extensions Index wants "Slicer" in
#: repository names (ExtensionsIndex scripts/check_description_files.py, check_git_repository_name).
REPOSITORY = "PUMITSlicer/SlicerPUMIT"


def cmakeValue(name: str) -> str:
    return re.search(rf'set\({name} "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text()).group(1)


def test_extensions_index_entry_validates_against_the_catalog_schema():
    """PUMITSlicer.json against the ExtensionsIndex catalog-entry schema (a copy in Testing/, see its $comment)."""
    entry = json.loads((REPO / "PUMITSlicer.json").read_text())
    schema = json.loads((REPO / "Testing" / "slicer-extension-catalog-entry-schema-v1.0.2.json").read_text())
    assert entry["$schema"] == schema["$id"], "the entry names the schema version it is checked against"
    try:
        import jsonschema
    except ImportError:
        pytest.skip("jsonschema is not installed (pip install jsonschema, or the training[slicer-test] extra)")
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(entry, schema)
    broken = dict(entry, tier=7, extra="x")
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2, "the schema does reject"


def test_extensions_index_naming_and_cmake_agree():
    """The Index's own checks: repository named Slicer*, extension name not starting with Slicer and equal to
    the CMake project and the JSON file name; category and dependencies as in CMakeLists.txt."""
    entry = json.loads((REPO / "PUMITSlicer.json").read_text())
    project = re.search(r"^project\((\w+)\)", (REPO / "CMakeLists.txt").read_text(), re.MULTILINE).group(1)
    repository = entry["scm_url"].removeprefix("https://github.com/").removesuffix(".git")
    assert repository == REPOSITORY and repository.split("/")[1].startswith("Slicer")
    assert project == "PUMITSlicer" == (REPO / "PUMITSlicer.json").stem and not project.lower().startswith("slicer")
    assert entry["build_dependencies"] == cmakeValue("EXTENSION_DEPENDS").split(";") == ["PyTorch"]
    assert entry["category"] == cmakeValue("EXTENSION_CATEGORY") and entry["scm_type"] == "git"


def test_extension_urls_point_to_files_of_this_repository():
    """Homepage, icon and screenshots are URLs of the extension repository whose files exist here; the
    screenshots are real PNGs and the homepage (docs/slicer.md) shows them."""
    raw = f"https://raw.githubusercontent.com/{REPOSITORY}/main/"
    urls = [cmakeValue("EXTENSION_ICONURL")] + cmakeValue("EXTENSION_SCREENSHOTURLS").split()
    assert len(urls) >= 3
    for url in urls:
        assert url.startswith(raw), url
        with Image.open(REPO / url.removeprefix(raw)) as image:
            assert image.format == "PNG" and min(image.size) >= 128, url
    homepage = cmakeValue("EXTENSION_HOMEPAGE")
    assert homepage == f"https://github.com/{REPOSITORY}/blob/main/docs/slicer.md"
    guide = (REPO / "docs" / "slicer.md").read_text()
    for url in urls[1:]:
        name = url.removeprefix(raw)
        assert f"]({name.removeprefix('docs/')})" in guide or f"]({name})" in guide, f"docs/slicer.md does not show {name}"
    import PUMITSlicer

    parent = types.SimpleNamespace()
    PUMITSlicer.PUMITSlicer(parent)
    assert homepage in parent.helpText


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
