"""The settings dialog: every field validated by the engine's own rules.

Fields are built from :class:`Settings` metadata (label, bounds, choices), so
the dialog can never drift from what the engine accepts. An invalid value
shows its reason beside the field and disables Save. API keys are typed into
password fields, shown masked, and stored through ``secrets.save_keys``
(owner-only ``.env``); they never pass through the settings object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.secrets import ApiKeys, Secret, load_keys, save_keys
from app.engine.settings import Settings, SettingsError, field_bounds, in_words

GROUPS = {
    "Risk": ("risk_per_trade", "max_positions", "max_position_pct", "max_exposure_pct", "daily_loss_limit",
             "flatten_on_circuit_breaker", "stop_loss_pct", "trailing_start_pct", "trailing_pct",
             "take_profit_pct", "stop_check_seconds", "max_round_trips", "no_entry_minutes_before_close",
             "flatten_minutes_before_close", "eod_flatten", "fractional", "max_price_move_pct",
             "bad_print_factor", "on_record_lost", "record_retention_days"),
    "Signals": ("mode", "auto_threshold", "approval_threshold", "weight_lstm", "weight_rf", "weight_hist_gb",
                "weight_momentum"),
    "Market and broker": ("watchlist", "timeframe", "broker", "data_source"),
    "Simulation and display": ("starting_cash", "slippage_bps", "commission_per_share", "sim_fill_participation",
                               "sim_cancel_delay_s", "demo_speed", "demo_pause_on_approval",
                               "demo_seed", "theme", "backtest_retrain_bars", "risk_free_rate"),
}


# how a number is shown and typed: (scale from the setting to the box, suffix, decimals, step).
# A fraction is typed as a percentage: "5" in a box that says % is 5%, which the file keeps as 0.05.
PERCENT = (100.0, " %", 2, 0.25)
UNITS: dict[str, tuple[float, str, int, float]] = {
    **dict.fromkeys(("risk_per_trade", "max_position_pct", "max_exposure_pct", "daily_loss_limit", "stop_loss_pct",
                     "trailing_start_pct", "trailing_pct", "take_profit_pct", "max_price_move_pct",
                     "risk_free_rate", "sim_fill_participation"), PERCENT),
    "auto_threshold": (1.0, "", 2, 0.01), "approval_threshold": (1.0, "", 2, 0.01),
    "weight_lstm": (1.0, "", 2, 0.05), "weight_rf": (1.0, "", 2, 0.05), "weight_hist_gb": (1.0, "", 2, 0.05),
    "weight_momentum": (1.0, "", 2, 0.05),
    "bad_print_factor": (1.0, " x", 1, 0.5), "demo_speed": (1.0, " x", 0, 100.0),
    "starting_cash": (1.0, "", 0, 1_000.0), "commission_per_share": (1.0, "", 4, 0.001),
    "slippage_bps": (1.0, " bps", 1, 0.5), "sim_cancel_delay_s": (1.0, " s", 1, 1.0),
}
PREFIX = {"starting_cash": "$", "commission_per_share": "$"}
INT_SUFFIX = {"stop_check_seconds": " s", "no_entry_minutes_before_close": " min",
              "flatten_minutes_before_close": " min", "record_retention_days": " days",
              "backtest_retrain_bars": " bars", "max_round_trips": " a day"}


ConnectionCheck = Callable[[ApiKeys, "str | None"], str]  # (keys, server URL) -> what to show


class _ConnectionSignals(QObject):
    done = Signal(str)


class _ConnectionTest(QRunnable):
    """Runs the broker check off the GUI thread; reports one line."""

    def __init__(self, check: Callable[[], str]) -> None:
        super().__init__()
        self.check = check
        self.signals = _ConnectionSignals()

    def run(self) -> None:
        try:
            self.signals.done.emit(self.check())
        except Exception as exc:  # noqa: BLE001 - the message is already scrubbed by the adapter
            self.signals.done.emit(f"failed: {exc}")


class SettingsDialog(QDialog):
    settingsSaved = Signal(object)

    def __init__(self, settings: Settings, env_file: Any, parent: QWidget | None = None, *,
                 live_check: Callable[[str], tuple[bool, str]] | None = None,
                 check_connection: ConnectionCheck | None = None,
                 alpaca_url: str | None = None) -> None:
        super().__init__(parent)
        self.live_check = live_check or (lambda phrase: (False, "live trading is not available"))
        self.check_connection = check_connection or (lambda keys, url: "no connection test in this window")
        self.alpaca_url = alpaca_url
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self.resize(640, 560)
        self.settings = settings
        self.env_file = env_file
        self.editors: dict[str, QWidget] = {}
        self.reasons: dict[str, QLabel] = {}
        outer = QVBoxLayout(self)
        # one page per group: the dialog fits a 720-line screen (each page scrolls if it must)
        self.pages = QTabWidget()
        self.pages.setObjectName("settingsPages")
        for title, names in GROUPS.items():
            box = QWidget()
            form = QFormLayout(box)
            for name in names:
                form.addRow(field_bounds(name).get("label", name), self._editor(name))
            self.pages.addTab(_scrolling(box), title)
        keys = QWidget()
        column = QVBoxLayout(keys)
        column.addWidget(self._keys_box())
        gate = QGroupBox("Live trading gate")
        gate_form = QFormLayout(gate)
        self.live_phrase = QLineEdit()
        self.live_phrase.setObjectName("livePhrase")
        self.live_phrase.setToolTip("Needed only to choose the alpaca-live broker")
        self.live_phrase.textChanged.connect(self.validate)
        gate_form.addRow("Confirmation phrase", self.live_phrase)
        column.addWidget(gate)
        column.addStretch(1)
        self.pages.addTab(_scrolling(keys), "Keys and live trading")
        outer.addWidget(self.pages)
        self.error = QLabel("")
        self.error.setObjectName("settingsError")
        self.error.setStyleSheet("color:#ef5350")
        outer.addWidget(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        outer.addWidget(self.buttons)
        self.validate()

    # ------------------------------------------------------------ editors
    def _editor(self, name: str) -> QWidget:
        meta = field_bounds(name)
        value = getattr(self.settings, name)
        kind = {f.name: str(f.type) for f in fields(Settings)}[name]
        if kind == "bool":
            editor: QWidget = QCheckBox()
            editor.setChecked(bool(value))  # type: ignore[attr-defined]
            editor.toggled.connect(self.validate)  # type: ignore[attr-defined]
        elif "choices" in meta:
            editor = QComboBox()
            editor.addItems(list(meta["choices"]))
            editor.setCurrentText(str(value))
            editor.currentTextChanged.connect(self.validate)
        elif kind == "int" and "min" in meta:
            editor = QSpinBox()
            editor.setRange(int(meta["min"]), int(meta["max"]))
            editor.setSuffix(INT_SUFFIX.get(name, ""))
            editor.setValue(int(value))
            editor.setGroupSeparatorShown(True)
            editor.valueChanged.connect(self.validate)
        elif kind == "float" and "min" in meta:
            scale, suffix, decimals, step = UNITS.get(name, (1.0, "", 4, 0.01))
            editor = QDoubleSpinBox()
            editor.setDecimals(decimals)
            editor.setRange(float(meta["min"]) * scale, float(meta["max"]) * scale)
            editor.setSingleStep(step)
            editor.setSuffix(suffix)
            editor.setPrefix(PREFIX.get(name, ""))
            editor.setGroupSeparatorShown(True)
            editor.setValue(float(value) * scale)
            editor.valueChanged.connect(self.validate)
        else:
            text = ", ".join(value) if isinstance(value, tuple) else str(value)  # a watchlist: "PLTR, NVDA"
            editor = QLineEdit(f"{value:g}" if isinstance(value, float) else text)
            editor.textChanged.connect(self.validate)
        editor.setObjectName(f"setting_{name}")
        if "min" in meta:
            scale, suffix, decimals, _ = UNITS.get(name, (1.0, INT_SUFFIX.get(name, ""), 0 if kind == "int" else 4,
                                                           1.0))
            lo, hi = (f"{PREFIX.get(name, '')}{meta[k] * scale:,.{decimals}f}{suffix}" for k in ("min", "max"))
            editor.setToolTip(f"{meta['label']}: from {lo} to {hi}")
        else:
            editor.setToolTip(str(meta.get("label", name)))
        reason = QLabel("")
        reason.setObjectName(f"reason_{name}")
        reason.setStyleSheet("color:#ef5350")
        self.editors[name], self.reasons[name] = editor, reason
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(editor)
        lay.addWidget(reason, 1)
        return row

    def _keys_box(self) -> QGroupBox:
        box = QGroupBox("Alpaca API keys (OS keyring, else an owner-only .env file; shown masked)")
        form = QFormLayout(box)
        self.key_fields: dict[str, QLineEdit] = {}
        for live in (False, True):
            keys = load_keys(self.env_file, live=live)
            prefix = "live" if live else "paper"
            for part, secret in (("key_id", keys.key_id), ("secret_key", keys.secret_key)):
                edit = QLineEdit()
                edit.setObjectName(f"{prefix}_{part}")
                edit.setEchoMode(QLineEdit.EchoMode.Password)
                edit.setPlaceholderText(secret.masked() or "not set")
                edit.setToolTip("Leave empty to keep the stored key")
                self.key_fields[f"{prefix}_{part}"] = edit
                form.addRow(f"{prefix.capitalize()} {part.replace('_', ' ')}", edit)
        self.test_button = QPushButton("Test paper connection")
        self.test_button.setObjectName("testConnectionButton")
        self.test_button.setToolTip("Ask Alpaca's paper endpoint for the account, without blocking the window")
        self.test_result = QLabel("")
        self.test_result.setObjectName("testConnectionResult")
        self.test_button.clicked.connect(self.test_connection)
        form.addRow(self.test_button, self.test_result)
        return box

    # --------------------------------------------------------- validation
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                out[name] = editor.currentText()
            elif isinstance(editor, QSpinBox):
                out[name] = editor.value()
            elif isinstance(editor, QDoubleSpinBox):
                scale = UNITS.get(name, (1.0,))[0]
                saved = float(getattr(self.settings, name))
                if round(saved * scale, editor.decimals()) == editor.value():
                    out[name] = saved  # untouched: kept to the last digit, not to the box's decimals
                else:
                    out[name] = round(editor.value() / scale, 10)  # 5 % -> 0.05 (not 0.05000000000000001)
            else:
                out[name] = editor.text().strip()  # type: ignore[attr-defined]
        return out

    @Slot()
    def validate(self, *_: object) -> Settings | None:
        for label in self.reasons.values():
            label.setText("")
        try:
            candidate = Settings.from_dict(self.values())
        except SettingsError as exc:
            if exc.name in self.reasons:
                self.reasons[exc.name].setText(in_words(exc.reason))
            named = str(field_bounds(exc.name).get("label", exc.name)) if exc.name in self.editors else exc.name
            self.error.setText(f"Cannot save: {named}: {in_words(exc.reason)}")
            self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(False)
            return None
        if candidate.broker == "alpaca-live":
            ok, why = self.live_check(self.live_phrase.text())
            if not ok:
                self.reasons["broker"].setText(why)
                self.error.setText(f"Cannot save: broker: {why}")
                self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(False)
                return None
        self.error.setText("")
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(True)
        return candidate

    @Slot()
    def save(self) -> None:
        candidate = self.validate()
        if candidate is None:
            return
        for live in (False, True):
            prefix = "live" if live else "paper"
            key, secret = (self.key_fields[f"{prefix}_{p}"].text().strip() for p in ("key_id", "secret_key"))
            if key and secret:
                save_keys(self.env_file, ApiKeys(Secret(key), Secret(secret)), live=live)
        for edit in self.key_fields.values():
            edit.clear()
        self.settings = candidate
        self.settingsSaved.emit(candidate)
        self.accept()

    # ---------------------------------------------------- connection test
    @Slot()
    def test_connection(self) -> None:
        typed = (self.key_fields["paper_key_id"].text().strip(), self.key_fields["paper_secret_key"].text().strip())
        stored = load_keys(self.env_file)
        keys = ApiKeys(Secret(typed[0]), Secret(typed[1])) if all(typed) else stored
        self.test_button.setEnabled(False)
        self.test_result.setText("testing…")
        url = self.alpaca_url
        loop = _running_loop()
        if loop is not None:  # the app runs asyncio inside Qt (qasync): a coroutine
            self._task = loop.create_task(self._test_async(keys, url))
            return
        job = _ConnectionTest(lambda: self.check_connection(keys, url))  # no asyncio loop (tests, embeds)
        job.signals.done.connect(self._tested)
        self._job = job  # keep the signals object alive until it reports
        QThreadPool.globalInstance().start(job)

    async def _test_async(self, keys: ApiKeys, url: str | None) -> None:
        import asyncio

        try:
            message = await asyncio.get_running_loop().run_in_executor(None, self.check_connection, keys, url)
        except Exception as exc:  # noqa: BLE001 - the adapter already scrubbed any key from the text
            message = f"failed: {exc}"
        self._tested(message)

    @Slot(str)
    def _tested(self, message: str) -> None:
        self.test_button.setEnabled(True)
        self.test_result.setText(message)


def _scrolling(page: QWidget) -> QScrollArea:
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setWidget(page)
    return scroll


def _running_loop() -> Any:
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None
    return loop if loop.is_running() else None

