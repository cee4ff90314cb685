"""Set up and run AI Trader with nothing but Python 3.11+ and pip.

    python3 dev.py run   [app arguments...]   install into .venv, then launch the app
    python3 dev.py test  [pytest arguments...] install app + test extras, run the checks
                                               (ruff, mypy, import contracts) and the tests
    python3 dev.py check                       the checks alone

The virtual environment is made once and re-installed only when
pyproject.toml changes. Standard library only: this runs before anything is
installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
MIN_PYTHON = (3, 11)


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _ensure_env(extras: str) -> Path:
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"AI Trader needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is {sys.version.split()[0]}")
    py = _python()
    if not py.exists():
        print(f"Creating {VENV} ...", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # noqa: BLE001 - Debian without python3-venv
            sys.exit(f"Cannot create a virtual environment ({exc}). On Debian/Ubuntu: "
                     "sudo apt install python3-venv")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != digest:
        print("Installing AI Trader and its dependencies (first time: a few minutes) ...", flush=True)
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", target], check=True)
        stamp.write_text(digest)
    return py


# What CI runs before the tests; each fails on any finding. Configured in pyproject.toml.
CHECKS: tuple[tuple[str, list[str]], ...] = (
    ("ruff", ["-m", "ruff", "check", "--no-cache", "."]),
    ("mypy", ["-m", "mypy"]),
    ("import contracts", ["-c", "import sys; from importlinter.cli import lint_imports_command; "
                                "sys.argv = ['lint-imports', '--no-cache']; sys.exit(lint_imports_command())"]),
)


def run_checks(py: Path, root: Path, quiet: bool = False,
               only: tuple[str, ...] | None = None) -> list[tuple[str, bool]]:
    """Run each check in ``root`` with interpreter ``py``; (name, passed) for each."""
    results = []
    for name, args in CHECKS:
        if only is not None and name not in only:
            continue
        done = subprocess.run([str(py), *args], cwd=root, capture_output=True, text=True)
        results.append((name, done.returncode == 0))
        if not quiet:
            status = "ok" if done.returncode == 0 else "FAILED"
            print(f"check {name}: {status}", flush=True)
            if done.returncode != 0:
                print((done.stdout + done.stderr).strip(), flush=True)
    return results


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "check"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        py = _ensure_env("")
        return subprocess.call([str(py), str(ROOT / "main.py"), *rest], cwd=ROOT)
    py = _ensure_env("test")
    checks_ok = all(ok for _, ok in run_checks(py, ROOT))
    if command == "check":
        return 0 if checks_ok else 1
    code = subprocess.call([str(py), "-m", "pytest", "--cov=app", "--cov-report=term",
                            "--cov-fail-under=85", *rest], cwd=ROOT)
    if code == 5:
        print("error: pytest collected no tests", file=sys.stderr)
        return 1
    if not checks_ok:
        print("error: ruff, mypy or the import contracts found something (see 'check ...: FAILED' above)",
              file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
