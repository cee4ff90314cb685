"""The sequence model: a two-layer LSTM over the last 60 bars of scaled features.

Keras trains it; NumPy runs it. ``model.predict`` costs ~50 ms a call here
(graph dispatch, not arithmetic), which would eat the whole per-bar budget,
so after training (or loading) the weights are copied out and the forward
pass (LSTM gates in Keras' i, f, c, o order, dropout off as at inference)
runs in NumPy: ~1 ms for one sequence. A test checks it against Keras.

TensorFlow is imported inside functions only: importing this module is cheap,
and the GUI never pays for TensorFlow at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from app.engine.data.features import StandardScalerFit
from app.engine.ml.models import Model, ProgressFn, TrainingCancelled, finite_rows

CLIP_Z = 8.0  # scaled features beyond +-8 sd (volume spikes) are clipped: they carry no more signal
CHUNK = 512  # sequences per batch-forward step; fixed so every row takes the same arithmetic path
_TF_READY = False


def configure_tensorflow() -> Any:
    """Import TensorFlow once, quietly, with a bounded thread pool.

    ``AI_TRADER_TF_THREADS`` sets the intra-op threads (default: up to 4), so
    training in the engine's thread leaves cores for the GUI.
    """
    global _TF_READY
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if not _TF_READY:
        _TF_READY = True
        threads = int(os.environ.get("AI_TRADER_TF_THREADS", "0")) or min(4, os.cpu_count() or 1)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1 if threads <= 2 else 2)
        except RuntimeError:  # the runtime already started (another library got there first)
            pass
    return tf


def valid_ends(Xs: np.ndarray, seq_len: int) -> np.ndarray:
    """Rows whose whole ``seq_len`` window (the row included) has finite features."""
    ok = finite_rows(Xs).astype(np.int64)
    run = np.concatenate([[0], np.cumsum(ok)])
    ends = np.arange(seq_len - 1, len(Xs))
    return np.asarray(ends[run[ends + 1] - run[ends + 1 - seq_len] == seq_len])


class LSTMModel(Model):
    """Input -> LSTM(64, sequences) -> Dropout(0.2) -> LSTM(32) -> Dropout(0.2) -> Dense(1, sigmoid).

    Early stopping watches the last 15 % of the training window (in time
    order, never shuffled into training), with a purge of ``horizon`` samples
    between the two so no training label peeks into the validation bars.
    On intraday bars it learns from one sequence every ``stride`` bars (15 minutes: three on
    5-minute bars): neighbouring 60-bar windows share 59 bars, and the trades they label
    share their exits, so every window adds little but training time.
    Seeded with ``keras.utils.set_random_seed``: the same data and seed give
    the same weights. ``small=True`` (tests only) shrinks it to run in seconds.
    """

    name = "lstm"

    def __init__(self, columns: Sequence[str], *, horizon: int = 1, seq_len: int = 60,
                 units: tuple[int, int] = (64, 32), dropout: float = 0.2, max_epochs: int = 30,
                 batch_size: int = 64, patience: int = 1, val_frac: float = 0.15,
                 learning_rate: float = 1e-3, seed: int = 42, stride: int = 1, small: bool = False) -> None:
        super().__init__(columns)
        if small:
            seq_len, units, max_epochs, batch_size, patience = 16, (8, 4), 3, 64, 2
        self.horizon, self.seq_len, self.units = horizon, seq_len, tuple(units)
        self.dropout, self.max_epochs, self.batch_size = dropout, max_epochs, batch_size
        self.patience, self.val_frac, self.learning_rate, self.seed = patience, val_frac, learning_rate, seed
        self.stride = max(1, int(stride))
        self.lookback = seq_len
        self.keras_model: Any = None
        self.mean = np.zeros(len(self.columns))
        self.std = np.ones(len(self.columns))
        self.history: dict[str, list[float]] = {}
        self._w: list[np.ndarray] = []

    # ------------------------------------------------------------ training
    def scale(self, X: np.ndarray) -> np.ndarray:
        z = (np.asarray(X, dtype="float64") - self.mean) / self.std
        return np.clip(z, -CLIP_Z, CLIP_Z).astype(np.float32)  # NaN stays NaN

    uses_segments = True

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None,
            segments: Sequence[int] | None = None) -> Model:
        """``segments``: where each symbol's rows start in a watchlist's stacked rows. Early
        stopping then watches the newest ``val_frac`` of every symbol's sequences, not the
        tail of the last symbol alone."""
        X = np.asarray(X, dtype="float64")
        y = np.asarray(y, dtype="float64")
        rows = finite_rows(X)
        if not rows.any():
            raise ValueError("LSTM has no rows with complete features to learn from")
        import pandas as pd

        scaler = StandardScalerFit.fit(pd.DataFrame(X[rows], columns=self.columns), self.columns)
        self.mean, self.std = scaler.mean, scaler.std
        Xs = self.scale(X)
        ends = valid_ends(Xs, self.seq_len)
        ends = ends[np.isfinite(y[ends])]
        bounds = [*sorted({0, *(int(a) for a in (segments or ()) if 0 < a < len(X))}), len(X)]
        parts = [self._split(ends[(ends >= a) & (ends < b)]) for a, b in pairwise(bounds)]
        train = np.concatenate([t for t, _ in parts]).astype(int)
        val = np.concatenate([v for _, v in parts]).astype(int)
        if len(train) < 2 * self.batch_size or len(val) < 8:
            raise ValueError(f"LSTM needs more labelled sequences (has {len(ends)})")
        self._train_keras(self._windows(Xs, train), y[train], self._windows(Xs, val), y[val], progress)
        return self

    def _split(self, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One symbol's labelled sequence ends into training and validation: the newest
        ``val_frac`` validate, the rest (less ``horizon`` before them, where labels read into
        the validation) train, one every ``stride`` bars with the newest kept."""
        if not len(ends):
            return ends, ends
        n_val = max(1, int(round(len(ends) * self.val_frac)))
        val = ends[-n_val:]
        train = ends[ends < val[0] - self.horizon]
        return train[(len(train) - 1) % self.stride :: self.stride], val

    def _windows(self, Xs: np.ndarray, ends: np.ndarray) -> np.ndarray:
        idx = ends[:, None] - (self.seq_len - 1) + np.arange(self.seq_len)
        return Xs[idx]

    def _train_keras(self, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                     progress: ProgressFn | None) -> None:
        configure_tensorflow()
        import keras

        keras.utils.set_random_seed(self.seed)
        model = self.build_keras(xt.shape[2])
        cancel = _cancel_callback(keras, progress, self.max_epochs)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                             restore_best_weights=True)
        hist = model.fit(xt, yt.astype(np.float32), validation_data=(xv, yv.astype(np.float32)),
                         epochs=self.max_epochs, batch_size=self.batch_size, shuffle=True,
                         callbacks=[stop, cancel], verbose=0)
        if getattr(cancel, "cancelled", False):
            raise TrainingCancelled("training cancelled")
        self.history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        self.set_keras_model(model)

    def build_keras(self, n_features: int) -> Any:
        import keras

        u1, u2 = self.units
        inputs = keras.Input(shape=(self.seq_len, n_features))
        x = keras.layers.LSTM(u1, return_sequences=True)(inputs)
        x = keras.layers.Dropout(self.dropout)(x)
        x = keras.layers.LSTM(u2)(x)
        x = keras.layers.Dropout(self.dropout)(x)
        out = keras.layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inputs, out, name="lstm_p_up")
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="binary_crossentropy")
        return model

    def set_keras_model(self, model: Any) -> None:
        """Adopt a trained (or loaded) Keras model and copy its weights for NumPy."""
        self.keras_model = model
        k1, r1, b1, k2, r2, b2, wd, bd = (np.asarray(w, dtype=np.float32) for w in model.get_weights())
        self.units = (r1.shape[0], r2.shape[0])
        self.seq_len = self.lookback = int(model.input_shape[1])
        self._w = [*_tanh_form(k1, r1, b1), *_tanh_form(k2, r2, b2), wd[:, 0], bd]

    # ----------------------------------------------------------- inference
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._need_weights()
        Xs = self.scale(X)
        out = np.full(len(Xs), np.nan)
        ends = valid_ends(Xs, self.seq_len)
        if not len(ends):
            return out
        W1, U1, b1, W2, U2, b2, wd, bd = self._w
        P1 = _blocked_matmul(np.nan_to_num(Xs), W1, b1)
        for start in range(0, len(ends), CHUNK):
            chunk = ends[start : start + CHUNK]
            padded = np.concatenate([chunk, np.full(CHUNK - len(chunk), chunk[-1])])
            idx = padded[:, None] - (self.seq_len - 1) + np.arange(self.seq_len)
            hs = _lstm_layer(P1, U1, True, rows=idx)
            h = _lstm_layer(hs @ W2 + b2, U2, False)
            out[chunk] = _sigmoid(h @ wd + bd)[: len(chunk)]
        return out

    def predict_last(self, X: np.ndarray) -> float:
        self._need_weights()
        Xs = self.scale(np.asarray(X)[-self.seq_len:])
        if len(Xs) < self.seq_len or not np.isfinite(Xs).all():
            return float("nan")
        W1, U1, b1, W2, U2, b2, wd, bd = self._w
        hs = _lstm_layer((Xs @ W1 + b1)[None], U1, True)
        h = _lstm_layer(hs @ W2 + b2, U2, False)
        return float(_sigmoid(h @ wd + bd)[0])

    def _need_weights(self) -> None:
        if not self._w:
            raise RuntimeError("LSTM is not trained")

    def params(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "units": list(self.units), "dropout": self.dropout,
                "max_epochs": self.max_epochs, "batch_size": self.batch_size,
                "patience": self.patience, "val_frac": self.val_frac, "horizon": self.horizon,
                "learning_rate": self.learning_rate, "seed": self.seed, "stride": self.stride,
                "epochs_run": len(self.history.get("loss", []))}


# ---------------------------------------------------------------- numpy forward
def _tanh_form(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Halve the i, f, o gate columns so one tanh serves every gate:
    sigmoid(z) = (1 + tanh(z / 2)) / 2, while the candidate keeps tanh(z)."""
    u = recurrent.shape[0]
    scale = np.full(4 * u, 0.5, dtype=np.float32)
    scale[2 * u : 3 * u] = 1.0
    return kernel * scale, recurrent * scale, bias * scale


def _lstm_layer(P: np.ndarray, U: np.ndarray, sequences: bool, rows: np.ndarray | None = None
                ) -> np.ndarray:
    """Run one LSTM layer from zero state over input projections ``P`` (x W + b).

    ``P`` is (sequences, steps, 4u); or, with ``rows`` (sequences, steps) given,
    (bars, 4u) and step t of each sequence reads ``P[rows[:, t]]``: the first
    layer's projections are shared by every window that holds the bar.
    """
    n, steps = rows.shape if rows is not None else P.shape[:2]
    u = U.shape[0]
    h = np.zeros((n, u), dtype=np.float32)
    c = np.zeros((n, u), dtype=np.float32)
    hs = np.empty((n, steps, u), dtype=np.float32) if sequences else h
    g = np.empty((n, 4 * u), dtype=np.float32)
    for t in range(steps):
        np.add(P[rows[:, t]] if rows is not None else P[:, t], h @ U, out=g)
        np.tanh(g, out=g)
        in_forget = g[:, : 2 * u]
        in_forget += 1.0
        in_forget *= 0.5
        o = g[:, 3 * u :]
        o += 1.0
        o *= 0.5
        c *= g[:, u : 2 * u]
        c += g[:, :u] * g[:, 2 * u : 3 * u]
        h = o * np.tanh(c)
        if sequences:
            hs[:, t] = h
    return hs if sequences else h


def _blocked_matmul(X: np.ndarray, W: np.ndarray, b: np.ndarray, block: int = 4096) -> np.ndarray:
    """X @ W + b in fixed-size, zero-padded blocks, so a row's result never depends
    on how many rows follow it (a bar's prediction must not change when later bars arrive)."""
    out = np.empty((len(X), W.shape[1]), dtype=np.float32)
    for s in range(0, len(X), block):
        part = X[s : s + block]
        if len(part) < block:
            part = np.vstack([part, np.zeros((block - len(part), X.shape[1]), dtype=X.dtype)])
        out[s : s + block] = (part @ W + b)[: len(out) - s]
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _cancel_callback(keras: Any, progress: ProgressFn | None, epochs: int) -> Any:
    class _Progress(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no type information
        cancelled = False

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if progress is None:
                return
            loss = (logs or {}).get("val_loss", float("nan"))
            if not progress((epoch + 1) / epochs, f"LSTM epoch {epoch + 1}: val loss {loss:.4f}"):
                self.cancelled = True
                self.model.stop_training = True

    return _Progress()
