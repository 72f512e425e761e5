"""The module's self-test as the extension build machines run it: no PyTorch there, and nothing may be installed.

``DisAnatDetect.py`` needs Slicer's Qt layer, which does not exist here, so a child Python simulates that machine:
minimal stand-ins for the Qt-only Slicer modules (``qt``, ``slicer.ScriptedLoadableModule``, ``slicer.i18n``,
``slicer.parameterNodeWrapper``; the test class runs on ``unittest.TestCase`` as in Slicer), torch made
unimportable, and every install entry point (``slicer.util.pip_install``, ``PyTorchUtils.installTorch``) replaced by
a recorder. The real ``DisAnatDetect.py``, ``DisAnatDetectLib`` and slicer-core's ``slicer`` are used.
"""

from __future__ import annotations

import json
import subprocess
import sys

from slicer_scene import MODULE_DIR

pytest_plugins = ["conftest_slicer"]

SIMULATION_TIMEOUT_SECONDS = 120

SIMULATION = r'''
import json, sys, types, unittest

sys.modules["torch"] = None  # this machine has no PyTorch: importing it raises ImportError
sys.path.insert(0, MODULE_DIR)

import slicer
import slicer.util

slicer.mrmlScene = slicer.vtkMRMLScene()  # the self-test clears the scene first
installs = []
slicer.util.pip_install = lambda *args, **kwargs: installs.append(("pip_install", args))
slicer.util.confirmOkCancelDisplay = lambda *args, **kwargs: True  # a user who would agree to anything
slicer.app = types.SimpleNamespace(testingEnabled=lambda: True, processEvents=lambda: None)

pyTorchUtils = types.ModuleType("PyTorchUtils")
class PyTorchUtilsLogic:
    def torchInstalled(self):
        return False
    def installTorch(self, *args, **kwargs):
        installs.append(("installTorch", kwargs))
pyTorchUtils.PyTorchUtilsLogic = PyTorchUtilsLogic
sys.modules["PyTorchUtils"] = pyTorchUtils

sys.modules["qt"] = types.ModuleType("qt")
i18n = types.ModuleType("slicer.i18n")
i18n.tr = lambda text: text
i18n.translate = lambda context, text: text
sys.modules["slicer.i18n"] = i18n
wrapper = types.ModuleType("slicer.parameterNodeWrapper")
wrapper.Choice = wrapper.WithinRange = lambda *args: None
wrapper.parameterNodeWrapper = lambda cls: cls
sys.modules["slicer.parameterNodeWrapper"] = wrapper
scripted = types.ModuleType("slicer.ScriptedLoadableModule")
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        pass
class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=1000):
        pass
for cls in (ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleTest):
    setattr(scripted, cls.__name__, cls)
sys.modules["slicer.ScriptedLoadableModule"] = scripted

import DisAnatDetect

result = unittest.TestResult()
DisAnatDetect.DisAnatDetectTest().run(result)
widget = DisAnatDetect.DisAnatDetectWidget()
print(json.dumps({
    "skipped": [reason for _, reason in result.skipped],
    "errors": [text for _, text in result.errors + result.failures],
    "ensureDependencies": widget.ensureDependencies(),
    "installs": [name for name, _ in installs],
    "torchImported": "torch" in sys.modules and sys.modules["torch"] is not None,
}))
'''


def test_self_test_skips_with_a_reason_and_installs_nothing_without_torch():
    code = f"MODULE_DIR = {str(MODULE_DIR)!r}\n" + SIMULATION
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=SIMULATION_TIMEOUT_SECONDS)
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == []
    assert len(outcome["skipped"]) == 1
    assert "PyTorch" in outcome["skipped"][0] and "nothing is installed" in outcome["skipped"][0]
    assert outcome["ensureDependencies"] is False  # in testing mode: reported missing, not installed
    assert outcome["installs"] == []
    assert not outcome["torchImported"]


def test_self_test_wait_loops_have_timeouts():
    """Every wait of the self-test is bounded: each process() call passes a timeout, each while loop a deadline."""
    import ast

    tree = ast.parse((MODULE_DIR / "DisAnatDetect.py").read_text(encoding="utf-8"))
    testClass = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "DisAnatDetectTest")
    calls = [node for node in ast.walk(testClass) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "process"]
    assert calls and all(any(keyword.arg == "timeout" for keyword in call.keywords) for call in calls)
    loops = [node for node in ast.walk(testClass) if isinstance(node, ast.While)]
    assert loops and all("deadline" in ast.unparse(loop.test) for loop in loops)
    names = {node.attr for node in ast.walk(testClass) if isinstance(node, ast.Attribute)}
    assert not names & {"pip_install", "installTorch", "ensureDependencies"}, "the self-test must not install"


def test_dependency_checks_follow_the_installed_torch(monkeypatch):
    from DisAnatDetectLib import dependencies

    assert dependencies.versionTuple("2.1.0+cu121") == (2, 1, 0)
    assert dependencies.versionTuple("1.13.1") == (1, 13, 1)
    monkeypatch.setattr(dependencies, "installedTorchVersion", lambda: "2.0.1")
    assert not dependencies.torchMeetsRequirement()
    assert any("installed: 2.0.1" in entry for entry in dependencies.missingPackagesDescription())
    monkeypatch.setattr(dependencies, "installedTorchVersion", lambda: "2.13.0")
    assert dependencies.torchMeetsRequirement()
    # nilearn and nibabel only build the atlas, which ships prebuilt: never asked for.
    assert not {"nilearn", "nibabel"} & set(dependencies.PIP_REQUIREMENTS)
