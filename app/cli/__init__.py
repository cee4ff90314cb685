"""The command line: thin users of the engine library (``python main.py data|train|predict|backtest|run``).

Each module adds its subcommand's parser and runs it; none holds trading logic.
They sit outside :mod:`app.engine` so the engine stays a library that the GUI,
the command line and the tests all use the same way.
"""
