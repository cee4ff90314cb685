"""Predictions: the LSTM + random-forest + momentum ensemble with calibrated confidence.

Modules (import them explicitly; this package imports nothing heavy, and
TensorFlow is only ever imported inside functions that need it):

* :mod:`~app.engine.ml.dataset` - labels, the horizon and why, features per bar;
* :mod:`~app.engine.ml.models` - the ``Model`` port, momentum, random forest;
* :mod:`~app.engine.ml.factory` - builds any of them, or the ensemble, by name;
* :mod:`~app.engine.ml.lstm` - the LSTM (Keras to train, NumPy to run);
* :mod:`~app.engine.ml.ensemble` - weighting, renormalising, Platt calibration;
* :mod:`~app.engine.ml.train` - walk-forward evaluation and the final fit;
* :mod:`~app.engine.ml.artifacts` - saving and defensive loading;
* :mod:`~app.engine.ml.live` - ``EnsembleSignalModel`` for the bot, batch prediction.

The ``train`` and ``predict`` commands are in :mod:`app.cli.ml`.
"""
