"""Desktop integration: a launcher so the app opens from the desktop's menu.

``python main.py install-desktop`` writes ``ai-trader.desktop`` into
``~/.local/share/applications`` from the template in ``resources/``, with the
absolute paths of *this* checkout: its virtual environment's python (so the
app runs with the packages it was installed with, whatever python is on the
PATH), ``main.py`` and the icon. Nothing here imports Qt, so it works on a
machine without a display.

Paths are escaped as the Desktop Entry Specification asks: an Exec argument
with spaces or shell characters is double-quoted, and backslashes are
doubled once for the quoting and once more for the string value.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "resources" / "ai-trader.desktop"
FILE_NAME = "ai-trader.desktop"
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def checkout_python(root: Path = ROOT) -> Path:
    """The checkout's .venv python (not resolved: the symlink is what activates the venv)."""
    for candidate in (root / ".venv" / "bin" / "python", root / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return Path(sys.executable)


def exec_arg(arg: str) -> str:
    """One argument of an Exec line, quoted and escaped per the specification."""
    if "\n" in arg or "\r" in arg:
        raise ValueError(f"a launcher path cannot contain a line break: {arg!r}")
    arg = arg.replace("%", "%%")  # field codes start with %
    if any(ch in _RESERVED for ch in arg):
        arg = '"' + "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg) + '"'
    return _string_value(arg)


def _string_value(text: str) -> str:
    """A value of type string: backslashes are escapes, so they are doubled."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"a launcher value cannot contain a line break: {text!r}")
    return text.replace("\\", "\\\\")


def launcher_text(python: Path, main: Path, icon: Path, workdir: Path, template: Path = TEMPLATE) -> str:
    """The template with Exec, TryExec, Icon and Path filled in; comments dropped."""
    values = {
        "Exec": f"{exec_arg(str(python))} {exec_arg(str(main))}",
        "TryExec": _string_value(str(python)),
        "Icon": _string_value(str(icon)),
        "Path": _string_value(str(workdir)),
    }
    out: list[str] = []
    for line in template.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        key = line.split("=", 1)[0].strip()
        if key in values:
            line = f"{key}={values.pop(key)}"
        out.append(line)
    out += [f"{k}={v}" for k, v in values.items()]  # keys the template lacks go at the end of the group
    return "\n".join(out) + "\n"


def install_launcher(home: Path | None = None, root: Path = ROOT) -> Path:
    """Write the launcher for this checkout; returns the file written.

    ``home`` defaults to the user's home (tests pass a temporary one). The file
    is written atomically, so a menu that rescans mid-write never sees half."""
    apps = (home or Path.home()) / ".local" / "share" / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    text = launcher_text(checkout_python(root), root / "main.py", root / "resources" / "icon.png", root)
    target = apps / FILE_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def add_desktop_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("install-desktop",
                              help="add AI Trader to the desktop's application menu (Linux)")
    p.add_argument("--home", help="home folder to install into (default: yours)")
    return p


def run_desktop_command(args: argparse.Namespace) -> int:
    """``python main.py install-desktop``: one line of what was done, or ``error: ...``."""
    if sys.platform != "linux" and not getattr(args, "home", None):
        print("error: desktop launchers are installed on Linux only", file=sys.stderr)
        return 2
    try:
        path = install_launcher(Path(args.home).expanduser() if getattr(args, "home", None) else None)
    except (OSError, ValueError) as exc:
        print(f"error: cannot install the launcher: {exc}", file=sys.stderr)
        return 2
    print(f"installed {path} (runs {checkout_python()} {ROOT / 'main.py'})")
    return 0
