"""Entry point: the desktop app, and the command-line tools beside it.

``python main.py`` opens the trading desk (demo mode without keys);
``python main.py --screenshot PATH --after SECONDS`` renders it offscreen;
``python main.py data ...`` manages market data, without loading Qt.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from app.cli.options import add_date_order
from app.engine import logs
from app.engine.dates import DATE_ORDER
from app.engine.instance import AlreadyRunning, InstanceLock
from app.engine.paths import AppFolderError, AppPaths
from app.engine.secrets import load_keys
from app.engine.settings import Settings, SettingsError

EXIT_ALREADY_RUNNING = 3


COMMANDS = ("data", "run", "backtest", "train", "predict", "install-desktop")


def build_parser(commands: bool = True) -> argparse.ArgumentParser:
    """The command line. The subcommands' modules pull in pandas and friends, so a
    plain launch of the window (``commands=False``) leaves them off its start-up path."""
    p = argparse.ArgumentParser(prog="ai-trader", description="AI stock-trading desk (PLTR first).")
    p.add_argument("--demo", action="store_true", help="force demo mode: simulated market and broker")
    p.add_argument("--data-dir", help="folder for everything the app writes (default: per-user data dir; "
                                      "or set AI_TRADER_HOME)")
    p.add_argument("--screenshot", metavar="PATH", help="run offscreen, save the window as PNG and exit")
    p.add_argument("--after", type=float, default=3.0, metavar="SECONDS",
                   help="with --screenshot: wall-clock seconds to run before the picture (default 3)")
    p.add_argument("--speed", type=float, help="demo replay speed (x real time)")
    p.add_argument("--replay", metavar="[SYM=]FILE", action="append",
                   help="rehearse on recorded bars (simulated broker, scratch database) instead of the demo; "
                        "repeat for several symbols")
    add_date_order(p)
    if not commands:
        p.set_defaults(command=None)
        return p
    sub = p.add_subparsers(dest="command")
    # deferred: the subcommands' modules load pandas and the engine; the window's start-up needs neither
    from app.cli.backtest import add_backtest_parser
    from app.cli.data import add_data_parser
    from app.cli.ml import add_ml_parsers
    from app.cli.run import add_run_parser
    from app.desktop import add_desktop_parser

    add_data_parser(sub)
    add_desktop_parser(sub)
    add_ml_parsers(sub)
    add_run_parser(sub)
    add_backtest_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except AppFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_commands = any(a in COMMANDS or a in ("-h", "--help") for a in argv)
    args = build_parser(commands=wants_commands).parse_args(argv)
    DATE_ORDER.set(getattr(args, "date_order", ""))
    paths = AppPaths.resolve(args.data_dir)
    if args.command == "install-desktop":
        from app.desktop import run_desktop_command  # deferred: see build_parser

        return run_desktop_command(args)
    from app.engine.clock import keep_sessions_in  # deferred: NumPy, for the commands that trade or read bars

    keep_sessions_in(paths.cache)
    if args.command == "data":
        from app.cli.data import run_data_command  # deferred: see build_parser

        logs.configure(paths.ensure().logs)
        return run_data_command(args, paths)
    if args.command in ("train", "predict"):
        from app.cli.ml import run_ml_command  # deferred: see build_parser

        logs.configure(paths.ensure().logs)
        return run_ml_command(args, paths)
    if args.command == "backtest":
        from app.cli.backtest import run_backtest_command  # deferred: see build_parser

        logs.configure_simulation()
        return run_backtest_command(args, paths.ensure())
    if args.command == "run":
        from app.cli.run import run_headless  # deferred: see build_parser

        return run_headless(args, paths)
    if args.screenshot:  # offscreen, unless a platform is named (QT_QPA_PLATFORM=xcb under Xvfb)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return run_gui(args, paths)


def _load_settings(paths: AppPaths, speed: float | None) -> tuple[Settings, list[str]]:
    """The settings, and what was wrong with the file (printed here, shown by the window)."""
    settings, problems = Settings.load_checked(paths.settings)
    for problem in problems:
        print(f"settings: {problem}", file=sys.stderr)
    if speed is not None:
        try:
            settings = settings.updated(demo_speed=speed)
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return settings, problems


def build_window(argv: Sequence[str]) -> object:
    """The main window with its engine worker started, without entering the
    event loop (for tests). A QApplication must already exist."""
    args = build_parser(commands=False).parse_args(list(argv))
    paths = AppPaths.resolve(args.data_dir).ensure()
    from PySide6.QtWidgets import QApplication

    # deferred: Qt and the window load for the window only, never for a subcommand
    from app.main_window import MainWindow
    from app.theme import apply_theme

    logs.configure(paths.logs)
    settings, problems = _load_settings(paths, args.speed)
    apply_theme(QApplication.instance(), settings.theme)  # type: ignore[arg-type]
    window = MainWindow(paths, settings, demo=True, replay=args.replay or ())
    window.say_settings_problems(problems)
    window.start_engine()
    return window


def run_gui(args: argparse.Namespace, paths: AppPaths) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("AI Trader")
    app.setDesktopFileName("ai-trader")
    icon = _resource("icon.png")
    if icon:
        app.setWindowIcon(QIcon(icon))
    try:
        paths.ensure()
    except AppFolderError as exc:
        _refuse_start(f"error: {exc}", quiet=bool(args.screenshot))
        return 2
    logs.configure(paths.logs)
    # deferred: QtNetwork loads for the window only, never for a subcommand
    from app.single_instance import ask_running_window, serve_raise

    try:
        lock = InstanceLock(paths.lock_file).acquire()
    except AlreadyRunning as exc:
        if not args.screenshot and ask_running_window(paths.home):
            print("AI Trader is already running: its window was brought to the front", file=sys.stderr)
            return 0
        _refuse_start(str(exc), quiet=bool(args.screenshot))
        return EXIT_ALREADY_RUNNING
    # deferred: Qt and the window load for the window only, never for a subcommand
    from app.main_window import MainWindow
    from app.theme import apply_theme

    settings, problems = _load_settings(paths, args.speed)
    apply_theme(app, settings.theme)
    window = MainWindow(paths, settings, demo=_demo_mode(args, paths, settings),
                        replay=args.replay or ())
    window.say_settings_problems(problems)
    if app.platformName() == "offscreen":
        window.show()  # no screen to fit: the picture at the window's own size
    else:
        window.show_fitted()
    serve_raise(window, paths.home)
    _close_on_terminate(window)
    window.start_engine()
    code = 0
    if os.environ.get("AI_TRADER_STARTUP_PROBE"):  # bench/bench_startup.py: when is the window up?
        import time

        QTimer.singleShot(0, lambda: print(f"window-shown {time.time():.4f}", flush=True))
    if args.screenshot:
        def shoot() -> None:
            nonlocal code
            if not window.grab().save(args.screenshot):
                print(f"error: cannot write {args.screenshot}", file=sys.stderr)
                code = 1
            window.close()
            app.quit()

        QTimer.singleShot(int(args.after * 1000), shoot)
    run_event_loop(app)
    lock.release()
    return code


def _close_on_terminate(window: object) -> None:
    """SIGTERM (a logout, ``kill``) and Ctrl+C close the window as its Quit does: the layout is
    saved and the engine stops cleanly. Python runs signal handlers only between its own
    bytecodes, so a timer gives it a moment four times a second while Qt waits for events."""
    # deferred: Qt loads for the window only, never for a subcommand
    from PySide6.QtCore import QTimer

    def close(_signum: int, _frame: object) -> None:
        QTimer.singleShot(0, window.close)  # type: ignore[attr-defined]

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, close)
    tick = QTimer(window)  # type: ignore[arg-type]
    tick.timeout.connect(lambda: None)
    tick.start(250)


def _refuse_start(text: str, quiet: bool) -> None:
    """Why the window will not open: on stderr, and in a dialog when there is a screen to show
    it on (the app is double-clicked far more often than started from a terminal)."""
    print(text, file=sys.stderr)
    if not quiet and _has_screen():
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "AI Trader cannot start", text.removeprefix("error: "))


def _has_screen() -> bool:
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() not in ("offscreen", "minimal")


def run_event_loop(app: object) -> None:
    """Qt's event loop with asyncio running inside it (qasync), so the app's own
    async work (connection tests, downloads) runs as coroutines on the GUI
    thread without ever blocking it."""
    import asyncio

    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)  # type: ignore[attr-defined]
    with loop:
        loop.run_until_complete(closed.wait())


def _demo_mode(args: argparse.Namespace, paths: AppPaths, settings: Settings) -> bool:
    """Demo unless the user chose an Alpaca broker and its keys are there (live also
    needs the gate, checked when the engine starts)."""
    broker = settings.broker
    if args.demo or broker not in ("alpaca-paper", "alpaca-live"):
        return True
    return not load_keys(paths.env_file, live=broker == "alpaca-live").complete


def _resource(name: str) -> str | None:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "resources" / name
    return str(path) if path.exists() else None


if __name__ == "__main__":
    raise SystemExit(main())
