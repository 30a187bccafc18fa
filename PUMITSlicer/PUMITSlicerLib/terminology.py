"""Segment terminology: resolve a model's single code against Slicer's loaded terminologies.

A model's label may carry ``SCHEME^VALUE^MEANING`` (e.g. ``SCT^5366008^Hippocampus``). A Slicer
terminology entry also names the *context* (dictionary) and the *category* holding that type; a code
placed in a context that lacks it shows as an invalid entry in Slicer's terminology selector. So the
code is looked up in the dictionaries loaded in the Terminologies module logic
(``vtkSlicerTerminologiesModuleLogic``: the 3D Slicer General Anatomy list, the DICOM master list, ...),
General Anatomy first, and the entry is built from the context and category where it is found.
A code found nowhere gets no terminology (the segment keeps its name and color). A label may also carry a
type *modifier* code (laterality, ``SCT^7771000^Left``); it is set where the found type lists that modifier
(Slicer then shows "Left Hippocampus") and otherwise left out, so the entry stays valid.
"""

from __future__ import annotations

import logging

import slicer
import vtk

logger = logging.getLogger(__name__)

GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER = "Segmentation category and type - DICOM master list"
#: Contexts searched first, in this order; any other loaded context comes after.
PREFERRED_CONTEXTS = (GENERAL_ANATOMY, DICOM_MASTER)


def terminologyLogic():
    """The application's Terminologies module logic, or None where the module is not loaded."""
    modules = getattr(slicer, "modules", None)
    module = getattr(modules, "terminologies", None) if modules is not None else None
    return module.logic() if module is not None else None


def loadedContexts(logic) -> list[str]:
    """Names of the loaded category/type contexts, preferred ones first."""
    names = vtk.vtkStringArray()
    logic.GetLoadedTerminologyNames(names)
    loaded = [names.GetValue(i) for i in range(names.GetNumberOfValues())]
    return [n for n in PREFERRED_CONTEXTS if n in loaded] + [n for n in loaded if n not in PREFERRED_CONTEXTS]


def parseCode(text: str | None) -> tuple[str, str, str] | None:
    """``SCHEME^VALUE^MEANING`` -> ``(scheme, value, meaning)``; None for anything else."""
    parts = (text or "").split("^")
    if len(parts) == 3 and all(p.strip() for p in parts):
        return parts[0].strip(), parts[1].strip(), parts[2].strip()
    return None


def findCode(logic, scheme: str, value: str) -> tuple[str, object, object] | None:
    """``(context name, vtkSlicerTerminologyCategory, vtkSlicerTerminologyType)`` of the first loaded
    context holding the type ``scheme^value``, or None."""
    for context in loadedContexts(logic):
        for c in range(logic.GetNumberOfCategoriesInTerminology(context)):
            category = slicer.vtkSlicerTerminologyCategory()
            if not logic.GetNthCategoryInTerminology(context, c, category):
                continue
            for t in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
                typeObject = slicer.vtkSlicerTerminologyType()
                if logic.GetNthTypeInTerminologyCategory(context, category, t, typeObject) and \
                        typeObject.GetCodingSchemeDesignator() == scheme and typeObject.GetCodeValue() == value:
                    return context, category, typeObject
    return None


def findModifier(logic, context: str, category, typeObject, scheme: str, value: str):
    """The type modifier ``scheme^value`` of ``typeObject`` in ``context`` (a ``vtkSlicerTerminologyType``),
    or None where the type lists no such modifier."""
    if not typeObject.GetHasModifiers():
        return None
    for m in range(logic.GetNumberOfTypeModifiersInTerminologyType(context, category, typeObject)):
        modifier = slicer.vtkSlicerTerminologyType()
        if logic.GetNthTypeModifierInTerminologyType(context, category, typeObject, m, modifier) and \
                modifier.GetCodingSchemeDesignator() == scheme and modifier.GetCodeValue() == value:
            return modifier
    return None


def resolveTerminology(text: str | None, logic=None, modifier: str | None = None) -> str | None:
    """A Slicer terminology entry string for a sidecar's ``terminology``.

    A full entry (``~``-separated) is kept as is; a single code is resolved with :func:`findCode` in
    ``logic`` (default: the application's); free text, an unknown code, or no terminology logic: None.
    ``modifier`` (``SCHEME^VALUE^MEANING``, e.g. laterality) is added where the found type offers it.
    """
    if not text:
        return None
    if text.count("~") >= 6:
        return text
    code = parseCode(text)
    if code is None:
        logger.info("Ignoring terminology %r: not a Slicer terminology entry nor a SCHEME^VALUE^MEANING code", text)
        return None
    logic = logic if logic is not None else terminologyLogic()
    if logic is None:
        logger.info("No terminology logic: segment terminology %r not set", text)
        return None
    found = findCode(logic, code[0], code[1])
    if found is None:
        logger.info("Terminology code %r is in none of the loaded terminologies; not set", text)
        return None
    context, category, typeObject = found
    mod = ("", "", "")
    modCode = parseCode(modifier) if modifier else None
    if modifier and modCode is None:
        logger.info("Ignoring terminology modifier %r: not a SCHEME^VALUE^MEANING code", modifier)
    elif modCode is not None:
        found_modifier = findModifier(logic, context, category, typeObject, modCode[0], modCode[1])
        if found_modifier is None:
            logger.info("Type %r lists no modifier %r in %s; set without it", text, modifier, context)
        else:
            mod = (found_modifier.GetCodeValue(), found_modifier.GetCodingSchemeDesignator(),
                   found_modifier.GetCodeMeaning())
    return logic.SerializeTerminologyEntry(
        context, category.GetCodeValue(), category.GetCodingSchemeDesignator(), category.GetCodeMeaning(),
        typeObject.GetCodeValue(), typeObject.GetCodingSchemeDesignator(), typeObject.GetCodeMeaning(),
        *mod, "", "", "", "", "", "", "")
