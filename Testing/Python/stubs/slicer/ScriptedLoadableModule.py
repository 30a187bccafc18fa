"""Test-only stand-in for Slicer's ``slicer.ScriptedLoadableModule`` (Qt-side, absent from slicer-core).

Only what PUMITSlicer.py uses outside its widget: module metadata, ``runTest``, the logic's singleton
parameter node (a real ``vtkMRMLScriptedModuleNode`` in ``slicer.mrmlScene``) and the test base class.
The widget base is a placeholder: widgets need Qt and are not exercised under pytest.
"""

import importlib
import logging
import os
import sys
import unittest


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""

    def resourcePath(self, filename):
        moduleDir = os.path.dirname(sys.modules[self.__module__].__file__)
        return os.path.join(moduleDir, "Resources", filename)

    def runTest(self, msec=100, **kwargs):
        testCase = getattr(importlib.import_module(self.__module__), self.moduleName + "Test")()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """Placeholder: needs Qt."""

    def __init__(self, parent=None):
        raise RuntimeError("module widgets need the Slicer application (Qt)")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = self.__class__.__name__.removesuffix("Logic")
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        import slicer

        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetModuleName(self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    messageDelay = 100

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        logging.getLogger(__name__).info(message)
