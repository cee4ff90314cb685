"""The trading core. Plain Python: nothing below this package imports Qt."""
