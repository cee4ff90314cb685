"""peewee table definitions. Nothing outside ``app.engine.storage`` imports these.

The models are declared without a database; :class:`Storage` binds them to
one SQLite file when it opens it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import peewee as pw


class UTCDateTimeField(pw.TextField):
    """Timezone-aware datetimes stored as ISO-8601 UTC text (sortable)."""

    def db_value(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC field")
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def python_value(self, value: str | None) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value)


class BaseModel(pw.Model):
    class Meta:
        legacy_table_names = False


class BarRow(BaseModel):
    symbol = pw.CharField(max_length=12)
    timeframe = pw.CharField(max_length=4)
    ts = pw.BigIntegerField()  # bar start, epoch seconds UTC
    open = pw.DoubleField()
    high = pw.DoubleField()
    low = pw.DoubleField()
    close = pw.DoubleField()
    volume = pw.DoubleField()
    source = pw.CharField(max_length=16, default="")

    class Meta:
        table_name = "bar"
        primary_key = pw.CompositeKey("symbol", "timeframe", "ts")
        without_rowid = True


class PredictionRow(BaseModel):
    symbol = pw.CharField(max_length=12, index=True)
    bar_time = UTCDateTimeField(index=True)
    p_lstm = pw.DoubleField(null=True)
    p_rf = pw.DoubleField(null=True)
    p_momentum = pw.DoubleField(null=True)
    p_up = pw.DoubleField()
    confidence = pw.DoubleField()
    model_version = pw.CharField(max_length=64)
    created_at = UTCDateTimeField()

    class Meta:
        table_name = "prediction"


class SignalRow(BaseModel):
    signal_id = pw.CharField(max_length=64, unique=True)
    symbol = pw.CharField(max_length=12, index=True)
    side = pw.CharField(max_length=4)
    confidence = pw.DoubleField()
    price = pw.DoubleField()
    time = UTCDateTimeField(index=True)
    expires_at = UTCDateTimeField()
    reasons = pw.TextField(default="[]")
    status = pw.CharField(max_length=16, default="intent")
    decision = pw.TextField(default="")
    decided_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "signal"


class OrderRow(BaseModel):
    client_order_id = pw.CharField(max_length=64, unique=True)
    broker_order_id = pw.CharField(max_length=64, default="")
    symbol = pw.CharField(max_length=12, index=True)
    side = pw.CharField(max_length=4)
    qty = pw.DoubleField()
    order_type = pw.CharField(max_length=8)
    stop_price = pw.DoubleField(null=True)
    limit_price = pw.DoubleField(null=True)
    status = pw.CharField(max_length=12, index=True)
    filled_qty = pw.DoubleField(default=0.0)
    filled_avg_price = pw.DoubleField(null=True)
    filled_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(index=True)
    updated_at = UTCDateTimeField()
    reason = pw.TextField(default="")
    signal_id = pw.CharField(max_length=64, default="")

    class Meta:
        table_name = "order"


class TradeRow(BaseModel):
    symbol = pw.CharField(max_length=12, index=True)
    qty = pw.DoubleField()
    entry_time = UTCDateTimeField()
    exit_time = UTCDateTimeField(index=True)
    entry_price = pw.DoubleField()
    exit_price = pw.DoubleField()
    pnl = pw.DoubleField()
    exit_reason = pw.CharField(max_length=32)

    class Meta:
        table_name = "trade"
        indexes = ((("symbol", "exit_time", "entry_time"), True),)


class PositionRow(BaseModel):
    """The engine's view of an open position (stops and trailing state)."""

    symbol = pw.CharField(max_length=12, primary_key=True)
    qty = pw.DoubleField()
    avg_price = pw.DoubleField()
    last_price = pw.DoubleField()
    opened_at = UTCDateTimeField()
    stop_price = pw.DoubleField(null=True)
    trailing_active = pw.BooleanField(default=False)
    high_water = pw.DoubleField(default=0.0)

    class Meta:
        table_name = "position"


class CommandRow(BaseModel):
    """Journal of order commands (place/cancel), replayable for debugging."""

    time = UTCDateTimeField(index=True)
    kind = pw.CharField(max_length=16)
    client_order_id = pw.CharField(max_length=64, index=True)
    payload = pw.TextField()
    outcome = pw.TextField(default="")

    class Meta:
        table_name = "command"


class StateRow(BaseModel):
    """Small key/value state: the day's starting equity, the paper account."""

    key = pw.CharField(max_length=64, primary_key=True)
    value = pw.TextField()

    class Meta:
        table_name = "state"


class SimPositionRow(BaseModel):
    """Positions held by the simulated broker (its own book, not the engine's)."""

    symbol = pw.CharField(max_length=12, primary_key=True)
    qty = pw.DoubleField()
    avg_price = pw.DoubleField()
    opened_at = UTCDateTimeField()

    class Meta:
        table_name = "sim_position"


ALL_MODELS: list[type[BaseModel]] = [
    BarRow,
    PredictionRow,
    SignalRow,
    OrderRow,
    TradeRow,
    PositionRow,
    CommandRow,
    StateRow,
    SimPositionRow,
]
