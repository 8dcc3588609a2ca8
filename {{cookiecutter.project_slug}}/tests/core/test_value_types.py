"""The pieces scaffolded resources build their non-text fields from (app/core/schemas.py)."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import AfterValidator, AwareDatetime, Field, TypeAdapter, ValidationError

from app.core.schemas import TextLimit, in_utc, to_places

Day: TypeAdapter[date] = TypeAdapter(Annotated[date, TextLimit(10)])
Amount: TypeAdapter[Decimal] = TypeAdapter(
    Annotated[Decimal, Field(max_digits=6, decimal_places=2), TextLimit(8), to_places(2)]
)
Moment: TypeAdapter[datetime] = TypeAdapter(
    Annotated[AwareDatetime, TextLimit(40), AfterValidator(in_utc)]
)


def test_a_string_longer_than_the_limit_is_refused_before_it_is_parsed() -> None:
    assert Day.validate_python("2026-01-02") == date(2026, 1, 2)
    with pytest.raises(ValidationError) as caught:
        Day.validate_python("2026-01-02" + " " * 10_000)
    assert [error["type"] for error in caught.value.errors()] == ["string_too_long"]
    # What is not a string is left to the type itself.
    assert Day.validate_python(date(2026, 1, 2)) == date(2026, 1, 2)


def test_the_limit_is_the_max_length_of_every_string_form_in_the_schema() -> None:
    assert Day.json_schema() == {"type": "string", "format": "date", "maxLength": 10}
    forms = Amount.json_schema()["anyOf"]
    assert {"type": "number"} in forms
    assert [form["maxLength"] for form in forms if form["type"] == "string"] == [8]
    optional = TypeAdapter(Annotated[date, TextLimit(10)] | None).json_schema()
    assert {"type": "string", "format": "date", "maxLength": 10} in optional["anyOf"]


@pytest.mark.parametrize(
    ("sent", "kept"), [("1.5", "1.50"), (3, "3.00"), ("1234.56", "1234.56"), ("-0.1", "-0.10")]
)
def test_a_decimal_is_kept_with_exactly_its_places(sent: object, kept: str) -> None:
    assert str(Amount.validate_python(sent)) == kept


@pytest.mark.parametrize("sent", ["1.555", "12345.6", "NaN", "Infinity", "123456789"])
def test_a_decimal_that_does_not_fit_is_refused(sent: str) -> None:
    with pytest.raises(ValidationError):
        Amount.validate_python(sent)


def test_a_time_is_moved_to_utc_and_a_naive_one_is_refused() -> None:
    plus_two = timezone(timedelta(hours=2))
    moved = Moment.validate_python("2026-01-02T05:04:05+02:00")
    assert moved == datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)
    assert moved.tzinfo is UTC
    assert moved.hour == 3
    with pytest.raises(ValidationError):
        Moment.validate_python("2026-01-02T03:04:05")
