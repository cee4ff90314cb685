"""The engine knows nothing of Qt: it runs headless, in backtests and in tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import app.engine

ENGINE = Path(app.engine.__file__).resolve().parent
FORBIDDEN = ("PySide6", "pyqtgraph", "qasync", "PyQt5", "PyQt6", "shiboken6")


def qt_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def test_the_checker_catches_every_form_of_import() -> None:
    assert qt_imports("import PySide6.QtCore") == ["PySide6.QtCore"]
    assert qt_imports("from pyqtgraph import PlotWidget") == ["pyqtgraph"]
    assert qt_imports("def f():\n    import qasync\n") == ["qasync"]
    assert qt_imports("importlib.import_module('PySide6')") == ["PySide6"]
    assert qt_imports("import numpy\nfrom . import PySide6ish") == []


def test_no_engine_module_imports_qt() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 20 and ENGINE / "bot.py" in files
    offenders = {str(f.relative_to(ENGINE)): qt_imports(f.read_text(encoding="utf-8")) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}


def test_building_the_engine_loads_no_qt() -> None:
    code = ("import sys, app.engine.bootstrap, app.engine.replay, app.engine.bot; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{FORBIDDEN!r}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"
