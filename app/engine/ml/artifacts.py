"""Saving and loading a trained ensemble, and refusing one that cannot be trusted.

A bundle is one folder per symbol and timeframe in the models folder
(``models/PLTR_5m/``): ``lstm.keras`` (the Keras model), ``lstm_scaler.joblib``
(its training-window feature scaling), ``random_forest.joblib``,
``calibrator.joblib`` and ``metadata.json``. The metadata names the symbol,
timeframe, horizon, feature list, training window, walk-forward metrics,
library versions and the sha256 of every file.

Loading is defensive because these files outlive the code that wrote them:

* a feature list that differs from what this version computes refuses the
  whole bundle (the models would read columns in the wrong order);
* a missing, altered (hash mismatch) or unreadable component file leaves
  just that component out, named in ``problems``; a file whose hash does not
  match is never unpickled;
* every failure is an :class:`ArtifactError` with a one-line message, so the
  caller can fall back to the rules model instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from app.engine.ml.dataset import feature_list
from app.engine.ml.ensemble import Ensemble, PlattCalibrator
from app.engine.ml.lstm import LSTMModel, configure_tensorflow
from app.engine.ml.models import COMPONENTS, HistGradientBoostingModel, Model, MomentumModel, RandomForestModel

FORMAT = 1
META = "metadata.json"
LIBRARIES = ("numpy", "pandas", "scikit-learn", "tensorflow", "keras", "joblib", "ta")


class ArtifactError(Exception):
    """A saved model cannot be used; the message says why in one line."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


# ---------------------------------------------------------------- saving
def save_bundle(folder: Path, ensemble: Ensemble, info: dict[str, Any],
                metrics: dict[str, Any] | None = None, saved_at: datetime | None = None) -> Path:
    """Write the bundle into a fresh folder, then swap it in, so a crash mid-save
    leaves the previous model intact rather than half of each."""
    import joblib

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    comps: dict[str, Any] = {}
    for name, model in ensemble.components.items():
        files: list[str] = []
        if name == "lstm":
            with warnings.catch_warnings():  # keras' own numpy-2 deprecation notice, not ours
                warnings.simplefilter("ignore", DeprecationWarning)
                model.keras_model.save(tmp / "lstm.keras")  # type: ignore[attr-defined]
            joblib.dump({"columns": model.columns, "mean": model.mean.tolist(),  # type: ignore[attr-defined]
                         "std": model.std.tolist()}, tmp / "lstm_scaler.joblib")  # type: ignore[attr-defined]
            files = ["lstm.keras", "lstm_scaler.joblib"]
        elif name in ("random_forest", "hist_gb"):
            joblib.dump(model.forest, tmp / f"{name}.joblib")  # type: ignore[attr-defined]
            files = [f"{name}.joblib"]
        comps[name] = {"params": model.params(), "files": {f: sha256(tmp / f) for f in files},
                       "trained_until": info.get("last_label")}
    cal: dict[str, Any] | None = None
    if ensemble.calibrator is not None:
        joblib.dump(ensemble.calibrator.to_dict(), tmp / "calibrator.joblib")
        cal = {"file": "calibrator.joblib", "sha256": sha256(tmp / "calibrator.joblib"),
               **ensemble.calibrator.to_dict()}
    meta = {"format": FORMAT, **info, "features": list(ensemble.columns), "components": comps,
            "calibrator": cal, "weights_at_training": ensemble.weights, "metrics": metrics or {},
            "versions": library_versions(),
            "saved_at": saved_at.isoformat() if saved_at else None}
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


# ---------------------------------------------------------------- loading
@dataclass
class LoadedBundle:
    folder: Path
    meta: dict[str, Any]
    components: dict[str, Model]
    calibrator: PlattCalibrator | None
    problems: dict[str, str] = field(default_factory=dict)  # component -> why it was left out
    notes: list[str] = field(default_factory=list)

    @property
    def symbol(self) -> str:
        return str(self.meta["symbol"])

    @property
    def timeframe(self) -> str:
        return str(self.meta["timeframe"])

    @property
    def horizon(self) -> int:
        return int(self.meta["horizon"])

    @property
    def columns(self) -> list[str]:
        return list(self.meta["features"])

    @property
    def version(self) -> str:
        return str(self.meta.get("_sha256", ""))[:12]

    def trained_until(self, name: str) -> str | None:
        until = self.meta["components"].get(name, {}).get("trained_until")
        return str(until) if until is not None else None

    def ensemble(self, weights: dict[str, float]) -> Ensemble:
        return Ensemble(self.columns, self.components, weights, self.calibrator)


def read_metadata(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.is_file():
        raise ArtifactError(f"no trained model in {folder} (no {META}); train one first")
    try:
        raw = path.read_bytes()
        meta = json.loads(raw.decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format') if isinstance(meta, dict) else '?'}")
        for key in ("symbol", "timeframe", "horizon", "features", "components"):
            if key not in meta:
                raise ValueError(f"{key} is missing")
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model metadata {path} is unreadable ({exc}); retrain") from None
    meta["_sha256"] = hashlib.sha256(raw).hexdigest()
    return meta


def check_features(meta: dict[str, Any], expected: list[str]) -> None:
    got = list(meta["features"])
    if got == expected:
        return
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    detail = "; ".join(filter(None, [
        f"now computes {', '.join(missing)} it never saw" if missing else "",
        f"no longer computes {', '.join(extra)}" if extra else "",
        "same names in another order" if not missing and not extra else ""]))
    raise ArtifactError(f"model {meta['symbol']} {meta['timeframe']} was trained on other features "
                        f"({detail}); retrain it")


def load_bundle(folder: Path, *, symbol: str | None = None, timeframe: str | None = None,
                components: tuple[str, ...] | None = None) -> LoadedBundle:
    """Load what can be trusted; raises :class:`ArtifactError` when nothing can."""
    meta = read_metadata(folder)
    if timeframe is not None and meta["timeframe"] != timeframe:
        raise ArtifactError(f"model in {folder} is for {meta['timeframe']} bars, not {timeframe}")
    if symbol is not None and str(meta["symbol"]).upper() != symbol.upper():
        raise ArtifactError(f"model in {folder} is for {meta['symbol']}, not {symbol}")
    check_features(meta, feature_list(meta["timeframe"]))
    bundle = LoadedBundle(Path(folder), meta, {}, None)
    names = sorted(meta["components"], key=lambda n: COMPONENTS.index(n) if n in COMPONENTS else 99)
    for name in names:
        spec = meta["components"][name]
        if components is not None and name not in components:
            continue
        try:
            bundle.components[name] = _load_component(Path(folder), name, spec, meta)
        except ArtifactError as exc:
            bundle.problems[name] = str(exc)
    if not bundle.components:
        why = "; ".join(f"{k}: {v}" for k, v in bundle.problems.items()) or "it has no components"
        raise ArtifactError(f"no usable model in {folder}: {why}")
    bundle.calibrator = _load_calibrator(Path(folder), meta, bundle)
    bundle.notes += _version_notes(meta)
    return bundle


def _verified(folder: Path, spec: dict[str, Any]) -> dict[str, Path]:
    paths = {}
    for fname, digest in spec.get("files", {}).items():
        path = folder / fname
        if not path.is_file():
            raise ArtifactError(f"{fname} is missing")
        if sha256(path) != digest:
            raise ArtifactError(f"{fname} changed since training (sha256 mismatch)")
        paths[fname] = path
    return paths


def _load_component(folder: Path, name: str, spec: dict[str, Any], meta: dict[str, Any]) -> Model:
    paths = _verified(folder, spec)
    params = dict(spec.get("params", {}))
    columns = list(meta["features"])
    try:
        if name == "momentum":
            return MomentumModel(columns, gain=params.get("gain", 1.0),
                                 horizons=tuple(params.get("horizons", (5, 10, 20))))
        if name == "random_forest":
            import joblib

            model = RandomForestModel(columns, lags=tuple(params.get("lags", (1, 3))))
            model.set_forest(joblib.load(paths["random_forest.joblib"]))
            return model
        if name == "hist_gb":
            import joblib  # deferred: as the forest's

            boost = HistGradientBoostingModel(columns, lags=tuple(params.get("lags", (1, 3))))
            boost.set_forest(joblib.load(paths["hist_gb.joblib"]))
            return boost
        if name == "lstm":
            return _load_lstm(paths, params, columns, int(meta["horizon"]))
    except ArtifactError:
        raise
    except ImportError as exc:
        raise ArtifactError(f"cannot load {name}: {exc.name or exc} is not installed") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear line
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{name} file is unreadable ({type(exc).__name__}: {first})") from None
    raise ArtifactError(f"unknown component {name!r}")


def _load_lstm(paths: dict[str, Path], params: dict[str, Any], columns: list[str], horizon: int) -> Model:
    import joblib
    import numpy as np


    scaler = joblib.load(paths["lstm_scaler.joblib"])
    if list(scaler["columns"]) != columns:
        raise ArtifactError("lstm scaler was fitted on other features")
    configure_tensorflow()
    import keras

    keras_model = keras.models.load_model(paths["lstm.keras"], compile=False)
    model = LSTMModel(columns, horizon=horizon, **{k: params[k] for k in (
        "dropout", "max_epochs", "batch_size", "patience", "val_frac", "learning_rate", "seed")
        if k in params})
    model.mean = np.asarray(scaler["mean"], dtype="float64")
    model.std = np.asarray(scaler["std"], dtype="float64")
    model.set_keras_model(keras_model)
    return model


def _load_calibrator(folder: Path, meta: dict[str, Any], bundle: LoadedBundle) -> PlattCalibrator | None:
    """A calibrator that was saved but cannot be read refuses the bundle: raw
    ensemble averages would pass for measured confidences and trade on them."""
    spec = meta.get("calibrator")
    if not spec:
        bundle.notes.append("not calibrated: probabilities are the raw ensemble average")
        return None
    try:
        _verified(folder, {"files": {spec["file"]: spec["sha256"]}})
        import joblib

        return PlattCalibrator.from_dict(joblib.load(folder / spec["file"]))
    except ArtifactError as exc:
        raise ArtifactError(f"calibrator unusable: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file of any kind is one clear ArtifactError
        raise ArtifactError(f"calibrator file is unreadable ({type(exc).__name__})") from None


def _version_notes(meta: dict[str, Any]) -> list[str]:
    saved = meta.get("versions", {})
    now = library_versions()
    return [f"{lib} {saved[lib]} saved the model; {now[lib]} loads it"
            for lib in ("scikit-learn", "keras") if lib in saved and saved[lib] != now.get(lib)]
