"""The guard rails hold: an import of the app's own code inside a function says why
it is deferred, and the CI checks (ruff, mypy, the import contracts) fail on a
violation planted in a copy of the code, not only pass on main."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import dev  # noqa: E402 - the repository's own runner, beside this folder

MARK = "deferred:"


def undeclared_deferred_imports(source: str) -> list[int]:
    """Lines of ``import app...`` / ``from app... import`` inside a function with no
    ``# deferred: why`` on the statement or on the comment lines just above its group."""
    lines = source.splitlines()
    found: list[int] = []

    def declared(node: ast.stmt) -> bool:
        own = lines[node.lineno - 1:node.end_lineno]
        if any(MARK in line for line in own):
            return True
        i = node.lineno - 2  # walk up over the imports and comments grouped with this one
        while i >= 0:
            text = lines[i].strip()
            if MARK in text and text.startswith("#"):
                return True
            if not (text.startswith(("#", "from ", "import ")) or text.endswith((",", "(")) or text == ")"):
                return False
            i -= 1
        return False

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                ours = isinstance(child, ast.ImportFrom) and child.level > 0
                ours = ours or any(n == "app" or n.startswith("app.") for n in names)
                if ours and not declared(child):
                    found.append(child.lineno)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(source), False)
    return found


def test_the_checker_tells_a_declared_deferral_from_a_hidden_one() -> None:
    assert undeclared_deferred_imports("def f():\n    from app.engine import bot\n") == [2]
    assert undeclared_deferred_imports("def f():\n    from . import bot\n") == [2]
    assert undeclared_deferred_imports("def f():\n    import numpy\n    from pandas import DataFrame\n") == []
    assert undeclared_deferred_imports("from app.engine import bot\n") == []  # module level: fine
    assert undeclared_deferred_imports("if True:\n    from app import x\n") == []
    declared = ("def f():\n"
                "    # deferred: pandas loads only here\n"
                "    from app.engine.data import frame\n"
                "    from app.engine.data.service import (\n"
                "        load_bars,\n"
                "    )\n"
                "    x = 1\n"
                "    from app.engine import bot\n")
    assert undeclared_deferred_imports(declared) == [8]  # the comment covers its group, not later ones
    assert undeclared_deferred_imports("def f():\n    from app import x  # deferred: start-up\n") == []


def test_no_import_of_the_app_hides_inside_a_function_without_saying_why() -> None:
    files = sorted((ROOT / "app").rglob("*.py"))
    assert len(files) > 60
    hidden = {str(f.relative_to(ROOT)): lines for f in files
              if (lines := undeclared_deferred_imports(f.read_text(encoding="utf-8")))}
    assert hidden == {}


@pytest.mark.slow
def test_ci_checks_fail_on_a_planted_violation_of_each_kind(tmp_path: Path) -> None:
    """A copy of the project with one ruff finding, one strict-mypy finding in the
    engine and one broken import contract: every check reports its own failure."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "app", copy / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    risk = copy / "app" / "engine" / "risk.py"
    risk.write_text(risk.read_text(encoding="utf-8")
                    + "\n\nimport os\n"  # for ruff: an unused import (F401)
                    + "\n\ndef untyped(x):\n    return x\n"  # mypy strict: a function without types
                    + "\n\nfrom app.widgets import chart\n",  # contract: the engine imports a widget
                    encoding="utf-8")
    results = dict(dev.run_checks(Path(sys.executable), copy, quiet=True))
    assert results == {"ruff": False, "mypy": False, "import contracts": False}


def test_the_checks_pass_on_this_tree() -> None:
    """What CI runs before the tests, run here too: a finding fails the suite."""
    results = dict(dev.run_checks(Path(sys.executable), ROOT, quiet=True, only=("ruff", "import contracts")))
    assert results == {"ruff": True, "import contracts": True}


def test_every_timeframe_is_known_to_every_vendor_table() -> None:
    """Adding a timeframe to the one table (types.TIMEFRAMES) fails here until each
    source, the label horizon and the fetch window know it too (CONTRIBUTING.md)."""
    from app.engine.data.service import DEFAULT_FETCH_DAYS
    from app.engine.data.sources import ALPACA_TIMEFRAME, YF_INTERVAL
    from app.engine.ml.dataset import session_reach
    from app.engine.settings import field_bounds
    from app.engine.types import TIMEFRAMES

    names = set(TIMEFRAMES)
    assert set(YF_INTERVAL) == names and set(ALPACA_TIMEFRAME) == names and set(DEFAULT_FETCH_DAYS) == names
    assert set(field_bounds("timeframe")["choices"]) == names
    assert {n: session_reach(n) for n in names} == {"1m": 390, "5m": 78, "15m": 26, "1h": 6, "1d": 1}
    assert [tf.bars_per_session for tf in TIMEFRAMES.values()] == [390, 78, 26, 7, 1]
