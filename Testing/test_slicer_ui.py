"""The Slicer module's GUI layer, checked without Slicer's Qt application.

``DisAnatDetect.py`` imports Slicer's Qt layer and cannot run here, so these tests read it (Python AST) together with
the Qt Designer file and the adapter: every widget the code uses exists, every parameter-bound widget matches a
parameter of the ``parameterNodeWrapper`` with a widget type the wrapper can bind, and every logic method or adapter
name the GUI calls exists. These are the mistakes that would otherwise only show up when a user opens the module.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree

import pytest

from slicer_scene import MODULE_DIR, addModulePath

REPOSITORY = MODULE_DIR.parent
MODULE_FILE = MODULE_DIR / "DisAnatDetect.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "DisAnatDetect.ui"
WRAPPER_CLASS = "DisAnatDetectParameterNode"

# Widget classes the parameterNodeWrapper binds (it matches the exact class; see Slicer's guiConnectors).
NODE_WIDGETS = {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"}
BOOL_WIDGETS = {"QCheckBox", "QPushButton"}
FLOAT_WIDGETS = {"QDoubleSpinBox", "ctkSliderWidget"}
CHOICE_WIDGETS = {"QComboBox"}
# Widgets that need the scene, which they get from the top widget's mrmlSceneChanged signal.
SCENE_WIDGETS = {"qMRMLNodeComboBox"}


@pytest.fixture(scope="module")
def ui():
    return ElementTree.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def widgets(ui) -> dict[str, ElementTree.Element]:
    return {widget.get("name"): widget for widget in ui.iter("widget")}


@pytest.fixture(scope="module")
def moduleTree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


@pytest.fixture(scope="module")
def wrapperFields(moduleTree) -> dict[str, ast.expr]:
    """Annotated fields of the class decorated with ``@parameterNodeWrapper``: name -> annotation."""
    for node in ast.walk(moduleTree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(decorator, ast.Name) and decorator.id == "parameterNodeWrapper"
                for decorator in node.decorator_list):
            assert node.name == WRAPPER_CLASS
            return {statement.target.id: statement.annotation for statement in node.body
                    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)}
    raise AssertionError("no @parameterNodeWrapper class in DisAnatDetect.py")


def stringProperty(widget: ElementTree.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop.find("string")
            return value.text if value is not None else None
    return None


def numberProperty(widget: ElementTree.Element, name: str) -> float | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop.find("double")
            if value is None:
                value = prop.find("number")
            return float(value.text) if value is not None else None
    return None


def boundWidgets(widgets) -> dict[str, ElementTree.Element]:
    """SlicerParameterName -> widget."""
    bound = {}
    for widget in widgets.values():
        parameter = stringProperty(widget, "SlicerParameterName")
        if parameter is not None:
            assert parameter not in bound, f"two widgets bound to {parameter}"
            bound[parameter] = widget
    return bound


def uiAttributesUsed(tree: ast.Module) -> set[str]:
    """Names X in ``<anything>.ui.X`` (self.ui.X, widget.ui.X)."""
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"}


def annotationParts(annotation: ast.expr) -> tuple[str, list[ast.Call]]:
    """(base type name, validator calls) of ``T`` or ``Annotated[T, V(...), ...]``."""
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "Annotated":
        elements = annotation.slice.elts
        return elements[0].id, [element for element in elements[1:] if isinstance(element, ast.Call)]
    return annotation.id, []


# --- the .ui and the Python that uses it -----------------------------------------------------------------------------

def test_ui_file_is_a_module_panel_with_inputs_outputs_and_advanced(ui, widgets):
    top = ui.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "DisAnatDetect"
    sections = {stringProperty(widget, "text"): widget for widget in widgets.values()
                if widget.get("class") == "ctkCollapsibleButton"}
    assert set(sections) == {"Inputs", "Outputs", "Advanced"}
    collapsed = [prop for prop in sections["Advanced"].findall("property") if prop.get("name") == "collapsed"]
    assert collapsed and collapsed[0].find("bool").text == "true"
    assert stringProperty(widgets["applyButton"], "text") == "Detect anomalies"


def test_every_widget_the_code_uses_exists(widgets, moduleTree):
    used = uiAttributesUsed(moduleTree)
    assert {"applyButton", "cancelButton", "progressBar", "statusLabel"} <= used  # the parser does see them
    assert used <= set(widgets), f"missing in the .ui: {sorted(used - set(widgets))}"


def test_every_custom_widget_class_is_declared(ui, widgets):
    declared = {custom.findtext("class") for custom in ui.iter("customwidget")}
    used = {widget.get("class") for widget in widgets.values()}
    custom = {name for name in used if name.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"undeclared: {sorted(custom - declared)}"


def test_node_selectors_receive_the_scene(ui, widgets):
    connected = {connection.findtext("receiver") for connection in ui.iter("connection")
                 if connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    needing = {name for name, widget in widgets.items() if widget.get("class") in SCENE_WIDGETS}
    assert needing and needing <= connected, f"no scene for {sorted(needing - connected)}"


# --- the parameter node ----------------------------------------------------------------------------------------------

def test_every_bound_widget_matches_a_wrapper_parameter(widgets, wrapperFields):
    bound = boundWidgets(widgets)
    assert set(bound) <= set(wrapperFields), f"not in the wrapper: {sorted(set(bound) - set(wrapperFields))}"
    assert set(wrapperFields) <= set(bound), f"no widget for: {sorted(set(wrapperFields) - set(bound))}"


def test_bound_widget_types_fit_their_parameters(widgets, wrapperFields):
    """The wrapper raises at module start when a widget cannot represent its parameter's type."""
    for name, widget in boundWidgets(widgets).items():
        baseType, validators = annotationParts(wrapperFields[name])
        validatorNames = {call.func.id for call in validators}
        widgetClass = widget.get("class")
        if baseType.startswith("vtkMRML"):
            assert widgetClass in NODE_WIDGETS, name
            nodeTypes = [item.text for prop in widget.findall("property") if prop.get("name") == "nodeTypes"
                         for item in prop.iter("string")]
            assert nodeTypes == [baseType], f"{name}: selector shows {nodeTypes}, parameter is {baseType}"
        elif baseType == "bool":
            assert widgetClass in BOOL_WIDGETS, name
        elif baseType == "float":
            assert widgetClass in FLOAT_WIDGETS, name
            # A slider needs a bounded range.
            assert widgetClass != "ctkSliderWidget" or "WithinRange" in validatorNames, name
        elif baseType == "str":
            assert widgetClass in CHOICE_WIDGETS and "Choice" in validatorNames, name
        else:
            raise AssertionError(f"{name}: no check for type {baseType}")


def test_wrapper_choices_and_ranges_come_from_the_adapter(widgets, wrapperFields):
    addModulePath()
    import DisAnatDetectLib

    for name, annotation in wrapperFields.items():
        _, validators = annotationParts(annotation)
        for call in validators:
            for argument in call.args:
                value = argument.value if isinstance(argument, ast.Starred) else argument
                if isinstance(value, ast.Name):
                    assert hasattr(DisAnatDetectLib, value.id), f"{name}: {value.id} is not in DisAnatDetectLib"
    threshold = boundWidgets(widgets)["threshold"]
    assert (numberProperty(threshold, "minimum"), numberProperty(threshold, "maximum")) == \
        DisAnatDetectLib.THRESHOLD_RANGE
    assert numberProperty(threshold, "singleStep") == DisAnatDetectLib.THRESHOLD_STEP
    assert numberProperty(threshold, "decimals") == DisAnatDetectLib.THRESHOLD_DECIMALS
    assert DisAnatDetectLib.MODALITY_CHOICES == ("auto", "T1", "T1c", "T2", "FLAIR", "PD")
    assert DisAnatDetectLib.DEVICE_CHOICES == ("auto", "CPU", "GPU")


# --- the GUI's calls into the adapter --------------------------------------------------------------------------------

def test_names_the_gui_imports_from_the_adapter_exist(moduleTree):
    addModulePath()
    import importlib

    for node in ast.walk(moduleTree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("DisAnatDetectLib"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                    f"{node.module}.{alias.name}"


def test_logic_methods_the_gui_calls_exist(moduleTree):
    addModulePath()
    from DisAnatDetectLib import DisAnatDetectLogic

    called = {node.attr for node in ast.walk(moduleTree)
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "logic"}
    assert {"startDetection", "finishDetection", "setThreshold"} <= called
    missing = {name for name in called if not hasattr(DisAnatDetectLogic, name)}
    assert not missing, f"DisAnatDetectLogic lacks {sorted(missing)}"


def test_gui_module_compiles_and_keeps_logic_out(moduleTree):
    compile(MODULE_FILE.read_text(encoding="utf-8"), str(MODULE_FILE), "exec")
    # The GUI's logic class only adds Slicer's base class and the typed parameter node to the adapter's logic.
    logic = next(node for node in moduleTree.body
                 if isinstance(node, ast.ClassDef) and node.name == "DisAnatDetectLogic")
    assert {ast.unparse(base) for base in logic.bases} == {"DisAnatDetectLib.DisAnatDetectLogic",
                                                          "ScriptedLoadableModuleLogic"}
    assert {item.name for item in logic.body if isinstance(item, ast.FunctionDef)} == {"__init__", "getParameterNode"}


def test_adapter_never_imports_qt():
    forbidden = {"qt", "ctk", "PythonQt", "qSlicerSubjectHierarchyModuleWidgetsPythonQt"}
    for path in sorted((MODULE_DIR / "DisAnatDetectLib").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
                assert name not in ("slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper"), \
                    f"{path.name} imports {name} (needs Qt)"
            if isinstance(node, ast.Attribute) and node.attr == "app" and getattr(node.value, "id", "") == "slicer":
                raise AssertionError(f"{path.name} uses slicer.app (the Qt application)")


def test_module_cmake_lists_the_module_files():
    """Slicer installs only the files its CMakeLists names: the GUI, the adapter and the .ui must be there."""
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8").split()
    wanted = [MODULE_FILE, UI_FILE, *sorted((MODULE_DIR / "DisAnatDetectLib").glob("*.py"))]
    missing = [path.relative_to(MODULE_DIR).as_posix() for path in wanted
               if path.relative_to(MODULE_DIR).as_posix() not in cmake]
    assert not missing, f"run python3 Resources/update_module_cmake.py; missing: {missing}"


def test_readme_section_has_install_walkthrough_script_and_troubleshooting():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    start, end = readme.index("<!-- SLICER-SECTION-START -->"), readme.index("<!-- SLICER-SECTION-END -->")
    section = readme[start:end]
    for needed in ("Extensions Manager", "Add module path", "--no-main-window", "--python-script",
                   "DisAnatDetectLogic", "saveNode", "Troubleshooting"):
        assert needed in section, needed
    for image in (part.split(")")[0] for part in section.split("](")[1:] if part.split(")")[0].endswith(".png")):
        assert (REPOSITORY / image).is_file(), image
