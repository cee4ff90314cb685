"""Settings: the product's defaults, validation that names the field, and a
settings file that survives being saved, reloaded or corrupted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.engine.settings import Settings, SettingsError, default_of, field_bounds


def test_defaults_match_the_product() -> None:
    s = Settings()
    assert s.risk_per_trade == 0.02
    assert s.max_positions == 5
    assert s.max_position_pct == 0.20
    assert s.daily_loss_limit == 0.05
    assert s.stop_loss_pct == 0.03
    assert (s.trailing_start_pct, s.trailing_pct) == (0.05, 0.02)
    assert s.stop_check_seconds == 30
    assert (s.auto_threshold, s.approval_threshold) == (0.80, 0.70)
    assert s.mode == "hybrid"
    assert s.flatten_minutes_before_close == 5
    assert s.eod_flatten and not hasattr(s, "allow_short")  # long only: shorting was never built
    assert default_of("mode") == "hybrid"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("risk_per_trade", 0.5),
        ("risk_per_trade", 0.0),
        ("max_positions", 0),
        ("max_positions", 21),
        ("max_position_pct", 1.5),
        ("daily_loss_limit", -0.01),
        ("stop_loss_pct", float("nan")),
        ("auto_threshold", 1.01),
        ("stop_check_seconds", 0),
        ("mode", "yolo"),
        ("timeframe", "3m"),
    ],
)
def test_out_of_range_values_name_the_field(name: str, value: object) -> None:
    with pytest.raises(SettingsError) as err:
        Settings().updated(**{name: value})
    assert err.value.name == name
    assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("risk_per_trade", "two percent"), ("max_positions", "five"), ("max_positions", 2.5),
     ("stop_loss_pct", None), ("eod_flatten", "perhaps")],
)
def test_non_numeric_values_name_the_field(name: str, value: object) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_dict({name: value})
    assert err.value.name == name


def test_a_bool_or_text_given_directly_is_not_a_number() -> None:
    with pytest.raises(SettingsError, match="max_positions"):
        Settings(max_positions=True)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="risk_per_trade"):
        Settings(risk_per_trade="0.02")  # type: ignore[arg-type]


def test_numeric_strings_are_coerced_and_a_one_symbol_file_becomes_a_watchlist() -> None:
    s = Settings.from_dict({"risk_per_trade": "0.01", "max_positions": "3", "symbol": " aapl ",
                            "eod_flatten": "off", "unknown_key": 1})
    assert (s.risk_per_trade, s.max_positions, s.symbol, s.eod_flatten) == (0.01, 3, "AAPL", False)
    assert s.watchlist == ("AAPL",)
    assert isinstance(s.max_positions, int)


def test_ensemble_weights_are_shares_and_not_all_zero() -> None:
    """Shares of the mix (the ensemble divides by their sum): a settings file of three weights
    summing to 1, saved before gradient boosting joined, still loads."""
    with pytest.raises(SettingsError, match="at least one ensemble weight"):
        Settings(weight_lstm=0.0, weight_rf=0.0, weight_hist_gb=0.0, weight_momentum=0.0)
    old = Settings.from_dict({"weight_lstm": 0.5, "weight_rf": 0.3, "weight_momentum": 0.2})
    assert old.ensemble_weights() == {"lstm": 0.5, "random_forest": 0.3, "hist_gb": 0.3, "momentum": 0.2}


def test_cross_field_rules() -> None:
    with pytest.raises(SettingsError) as err:
        Settings(approval_threshold=0.85, auto_threshold=0.80)
    assert err.value.name == "approval_threshold"
    with pytest.raises(SettingsError) as err:
        Settings(trailing_pct=0.06, trailing_start_pct=0.05)
    assert err.value.name == "trailing_pct"
    with pytest.raises(SettingsError, match="watchlist"):
        Settings(watchlist=("BRK B",))


def test_updated_refuses_unknown_names() -> None:
    with pytest.raises(SettingsError, match="not a setting"):
        Settings().updated(leverage=10)


def test_bounds_are_exposed_for_the_dialog() -> None:
    b = field_bounds("risk_per_trade")
    assert (b["min"], b["max"]) == (0.001, 0.05)
    assert field_bounds("mode")["choices"] == ("manual", "hybrid", "auto")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    s = Settings().updated(mode="auto", risk_per_trade=0.01, max_positions=3, symbol="msft",
                           fractional=True, theme="light")
    s.save(path)
    assert Settings.load(path) == s
    assert json.loads(path.read_text())["mode"] == "auto"
    assert not path.with_suffix(".tmp").exists()


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert Settings.load(tmp_path / "absent.json") == Settings()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"risk_per_trade": 0.9}',  # valid JSON, out of bounds
        b'{"max_positions": "many"}',
        b"[1, 2, 3]",  # JSON, but not an object
        b"null",
        b"\xff\xfe\x00garbage\x80",  # not even text
    ],
)
def test_corrupt_file_falls_back_to_defaults_and_keeps_the_bad_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    assert Settings.load(path) == Settings()
    kept = tmp_path / "settings.invalid.json"
    assert kept.read_bytes() == content
    assert not path.exists() or Settings.load_checked(path) == (Settings(), []), "what is left loads cleanly"
    # the next save writes a good file again
    Settings().save(path)
    assert Settings.load(path) == Settings()


def test_a_watchlist_of_one_to_ten_us_tickers() -> None:
    s = Settings.from_dict({"watchlist": "pltr, nvda  BRK.B"})
    assert s.watchlist == ("PLTR", "NVDA", "BRK.B") and s.symbol == "PLTR"
    assert Settings().watchlist == ("PLTR",)  # PLTR alone by default, as before
    assert s.updated(symbol="nvda").watchlist == ("NVDA", "PLTR", "BRK.B")  # one named goes first
    assert s.updated(symbol="SPY").watchlist == ("SPY", "PLTR", "NVDA", "BRK.B")


@pytest.mark.parametrize("watchlist, reason", [
    ([], "at least one ticker"),
    ([f"S{k}" for k in range(11)], "at most 10"),
    (["PLTR", None], "None is not a ticker"),
    (["ＰＬＴＲ"], "full-width or accented"),
    (["NVDÀ"], "full-width or accented"),
    (["PL TR"], "other than upper-case letters"),
    (["PLTR$"], "other than upper-case letters"),
    (["TOOLONGTICKER"], "1-10 characters"),
    ([".B"], "start or end with '.'"),
    (["PLTR", "pltr"], "PLTR listed twice"),
    (42, "not a list of tickers"),
])
def test_a_bad_watchlist_is_refused_with_the_reason(watchlist: object, reason: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_dict({"watchlist": watchlist})
    assert err.value.name == "watchlist" and reason in str(err.value)


def test_a_watchlist_survives_saving_and_loading(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    s = Settings(watchlist=("PLTR", "NVDA", "SPY"))
    s.save(path)
    assert json.loads(path.read_text())["watchlist"] == ["PLTR", "NVDA", "SPY"]
    assert Settings.load(path) == s


def test_one_bad_value_falls_back_alone_and_the_rest_are_kept(tmp_path: Path) -> None:
    """A full-width ticker must not reset the risk limits and the mode to their defaults."""
    path = tmp_path / "settings.json"
    content = '{"watchlist": ["PLTR", "\uff2e\uff36\uff24\uff21"], "max_positions": 2, "mode": "manual", ' \
              '"daily_loss_limit": 0.01, "risk_per_trade": 9}'
    path.write_text(content)
    settings, problems = Settings.load_checked(path)
    assert (settings.max_positions, settings.mode, settings.daily_loss_limit) == (2, "manual", 0.01)
    assert settings.watchlist == Settings().watchlist and settings.risk_per_trade == Settings().risk_per_trade
    assert sorted(p.split(":")[0] for p in problems) == ["risk_per_trade", "watchlist"]
    assert (tmp_path / "settings.invalid.json").read_text() == content, "the original is kept"
    assert Settings.load_checked(path) == (settings, []), "the repaired file loads cleanly next time"


@pytest.mark.parametrize("content, field", [
    ('{"max_positions": ' + "9" * 400 + ', "mode": "manual"}', "max_positions"),
    ('{"risk_per_trade": ' + "9" * 400 + ', "mode": "manual"}', "risk_per_trade"),
    ("[" * 100_000, None),
])
def test_files_that_once_crashed_every_start_are_refused_with_the_reason(tmp_path: Path, content: str,
                                                                       field: str | None) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    settings, problems = Settings.load_checked(path)
    assert len(problems) == 1
    if field is None:
        assert settings == Settings() and "could not be read" in problems[0]
    else:
        assert problems[0].startswith(f"{field}: '9999") and len(problems[0]) < 200, "the number is shortened"
        assert settings.mode == "manual", "the good values are kept"


def test_a_second_bad_file_never_overwrites_the_first_backup(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{first")
    Settings.load(path)
    path.write_text("{second")
    Settings.load(path)
    assert (tmp_path / "settings.invalid.json").read_text() == "{first"
    assert (tmp_path / "settings.invalid-2.json").read_text() == "{second"


KEPT = '"risk_per_trade": 0.005, "mode": "manual", "max_positions": 2'


@pytest.mark.parametrize("content, reset", [
    ('{' + KEPT + ', "approval_threshold": 0.9, "auto_threshold": 0.85}', {"approval_threshold", "auto_threshold"}),
    ('{' + KEPT + ', "weight_lstm": 0, "weight_rf": 0, "weight_hist_gb": 0, "weight_momentum": 0}',
     {"weight_lstm", "weight_rf", "weight_hist_gb", "weight_momentum"}),
    ('{' + KEPT + ', "trailing_pct": 0.08, "trailing_start_pct": 0.05}', {"trailing_pct", "trailing_start_pct"}),
    ('{' + KEPT + ', "demo_seed": ' + "7" * 5000 + '}', {"demo_seed"}),
], ids=["thresholds-crossed", "weights-all-zero", "trailing-above-its-start", "5000-digit-int"])
def test_a_rule_between_fields_or_a_huge_number_resets_only_those_fields(tmp_path: Path, content: str,
                                                                         reset: set[str]) -> None:
    """Once, each of these reset every setting: risk_per_trade 0.005 became 0.02, four times
    the user's risk."""
    path = tmp_path / "settings.json"
    path.write_text(content)
    settings, problems = Settings.load_checked(path)
    assert (settings.risk_per_trade, settings.mode, settings.max_positions) == (0.005, "manual", 2)
    assert len(problems) == 1 and all(name in problems[0] for name in reset), problems
    assert len(problems[0]) < 300, "a 5,000-digit number is not printed whole"
    for name in reset:
        assert getattr(settings, name) == default_of(name)


def test_a_settings_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows Notepad writes a UTF-8 BOM before the first brace."""
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xef\xbb\xbf" + ('{' + KEPT + '}').encode())
    assert Settings.load_checked(path) == (Settings(risk_per_trade=0.005, mode="manual", max_positions=2), [])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_settings_file_that_is_a_pipe_or_too_large_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    os.mkfifo(path)  # reading it would wait for a writer forever
    settings, problems = Settings.load_checked(path)
    assert settings == Settings() and "not a regular file" in problems[0]
    path.write_text('{"mode": "manual", "pad": "' + "x" * 2**20 + '"}')
    settings, problems = Settings.load_checked(path)
    assert settings == Settings() and "a settings file is a few KB" in problems[0]


def test_a_utf16_file_a_repeated_key_and_a_huge_value_are_handled_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{' + KEPT + '}', encoding="utf-16")  # Notepad's "Unicode"
    assert Settings.load_checked(path) == (Settings(risk_per_trade=0.005, mode="manual", max_positions=2), [])
    path.write_text('{' + KEPT + ', "mode": "auto"}')
    settings, problems = Settings.load_checked(path)
    assert settings.mode == "auto" and problems == ["mode is given more than once: the last value is used"]
    path.write_text('{' + KEPT + ', "theme": "' + "x" * 900_000 + '"}')
    settings, problems = Settings.load_checked(path)
    assert settings.risk_per_trade == 0.005 and settings.theme == "dark"
    assert len(problems) == 1 and problems[0].startswith("theme: ") and len(problems[0]) < 400


def test_no_backup_is_ever_overwritten_however_many_there_are(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    for n in range(1, 101):
        (tmp_path / ("settings.invalid.json" if n == 1 else f"settings.invalid-{n}.json")).write_text(str(n))
    path.write_text("{broken")
    Settings.load(path)
    assert (tmp_path / "settings.invalid-100.json").read_text() == "100"
    assert (tmp_path / "settings.invalid-101.json").read_text() == "{broken"
