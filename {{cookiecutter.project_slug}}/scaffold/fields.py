"""The field types a scaffolded resource may have, and the code each one becomes.

A field is written `name:type`, with `?` after the type for a field that may be null:
`title:str(200)`, `notes:text(5000)?`, `quantity:int`, `amount:decimal(12,2)`, `paid:bool`,
`due:date`, `shipped_at:datetime?`.
"""

import builtins
import keyword
import re
from dataclasses import dataclass

from scaffold.errors import ScaffoldError

# Longest a column or resource name may be: PostgreSQL truncates identifiers at 63 bytes, and
# the index and constraint names add their own parts to the table's name.
MAX_NAME_LENGTH = 30
IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
FIELD_SPEC = re.compile(
    r"(?P<name>[^:]+):(?P<kind>[a-z]+)(?:\((?P<args>[0-9, ]*)\))?(?P<optional>\?)?"
)
# Each type: its Python type, and its column type as the model and as the migration write it.
TYPES = {
    "str": ("str", "String({length_constant})", "sa.String(length={length})"),
    "text": ("str", "Text", "sa.Text()"),
    "int": ("int", "Integer", "sa.Integer()"),
    "decimal": (
        "Decimal",
        "Numeric({digits_constant}, {places_constant})",
        "sa.Numeric(precision={digits}, scale={places})",
    ),
    "bool": ("bool", "Boolean", "sa.Boolean()"),
    "date": ("date", "Date", "sa.Date()"),
    "datetime": ("datetime", "UTCDateTime()", "sa.DateTime(timezone=True)"),
}
KINDS = tuple(TYPES)
DEFAULT_DECIMAL = (12, 2)
MAX_TEXT_LENGTH = 1_000_000
MAX_DECIMAL_DIGITS = 38
# PostgreSQL's INTEGER; SQLite stores larger ones, but the schema is one for both databases.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# The longest string form of a date ("2026-01-02") and of a time with an offset.
DATE_TEXT_LENGTH = 10
DATETIME_TEXT_LENGTH = 40

# Columns every resource has (app/db/base.py and the owner), and names the base classes and the
# generated modules already use for something else.
RESERVED_FIELDS = frozenset(
    {
        "id",
        "owner_id",
        "owner",
        "created_at",
        "updated_at",
        "version",
        "metadata",
        "registry",
        "session",
        "data",
        "values",
        "field",
        "schema",
        "copy",
        "dict",
        "json",
        "construct",
        "validate",
        "from_orm",
        "parse_obj",
        "parse_raw",
        "parse_file",
        "schema_json",
        "update_forward_refs",
        "uuid",
        "date",
        "datetime",
        "decimal",
        "annotated",
        "not_null",
        "single_line",
        "multi_line",
        "read_schema",
        "string_constraints",
        "aware_datetime",
        "text_limit",
        "after_validator",
        "mapped",
        "mapped_column",
    }
)


def check_identifier(name: str, what: str) -> None:
    """A snake_case Python identifier that is no keyword and shadows no builtin."""
    if not IDENTIFIER.fullmatch(name):
        raise ScaffoldError(f"{what} {name!r} is not a snake_case name (a-z, 0-9 and _)")
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"{what} {name!r} is longer than {MAX_NAME_LENGTH} characters")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{what} {name!r} is a Python keyword")
    if name in dir(builtins):
        raise ScaffoldError(f"{what} {name!r} would shadow the Python builtin of that name")


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    optional: bool = False
    length: int = 0  # str and text
    digits: int = 0  # decimal
    places: int = 0  # decimal

    @property
    def alias(self) -> str:
        """The schema's type alias (`Title`), as items names its own."""
        return camel(self.name)

    @property
    def is_text(self) -> bool:
        return self.kind in {"str", "text"}

    @property
    def length_constant(self) -> str:
        return f"{self.name.upper()}_MAX_LENGTH"

    @property
    def digits_constant(self) -> str:
        return f"{self.name.upper()}_DIGITS"

    @property
    def places_constant(self) -> str:
        return f"{self.name.upper()}_PLACES"

    # --- app/<name>/models.py -----------------------------------------------------------------

    def constants(self) -> list[str]:
        if self.is_text:
            return [f"{self.length_constant} = {self.length}"]
        if self.kind == "decimal":
            return [
                f"{self.digits_constant} = {self.digits}",
                f"{self.places_constant} = {self.places}",
            ]
        return []

    def _types(self) -> tuple[str, str, str]:
        python, column, migration = TYPES[self.kind]
        sizes = {
            "length": self.length,
            "digits": self.digits,
            "places": self.places,
            "length_constant": self.length_constant,
            "digits_constant": self.digits_constant,
            "places_constant": self.places_constant,
        }
        return python, column.format(**sizes), migration.format(**sizes)

    @property
    def python_type(self) -> str:
        return self._types()[0]

    @property
    def column_type(self) -> str:
        return self._types()[1]

    def column(self) -> str:
        mapped = f"{self.python_type} | None" if self.optional else self.python_type
        return f"{self.name}: Mapped[{mapped}] = mapped_column({self.column_type})"

    # --- the migration ------------------------------------------------------------------------

    @property
    def migration_type(self) -> str:
        return self._types()[2]

    def migration_column(self) -> str:
        return f'sa.Column("{self.name}", {self.migration_type}, nullable={self.optional}),'

    # --- app/<name>/schemas.py ----------------------------------------------------------------

    def alias_definition(self) -> str:
        """`Title = Annotated[...]`: what a client may send for the field."""
        if self.kind == "str":
            constraints = (
                f"StringConstraints(strip_whitespace=True, min_length=1, "
                f"max_length={self.length_constant}), SingleLine"
            )
            return f"{self.alias} = Annotated[str, {constraints}]"
        if self.kind == "text":
            return (
                f"{self.alias} = Annotated[str, StringConstraints(max_length="
                f"{self.length_constant}), MultiLine]"
            )
        if self.kind == "int":
            return f"{self.alias} = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]"
        if self.kind == "decimal":
            return (
                f"{self.alias} = Annotated[Decimal, Field(max_digits={self.digits_constant}, "
                f"decimal_places={self.places_constant}), TextLimit({self.digits_constant} + 2), "
                f"to_places({self.places_constant})]"
            )
        if self.kind == "bool":
            return f"{self.alias} = bool"
        if self.kind == "date":
            return f"{self.alias} = Annotated[date, TextLimit({DATE_TEXT_LENGTH})]"
        return (
            f"{self.alias} = Annotated[AwareDatetime, TextLimit({DATETIME_TEXT_LENGTH}), "
            "AfterValidator(in_utc)]"
        )

    def create_field(self) -> str:
        if self.optional:
            return f"{self.name}: {self.alias} | None = None"
        return f"{self.name}: {self.alias}"

    def update_field(self) -> str:
        if self.optional:
            return f"{self.name}: {self.alias} | None = None"
        return f"{self.name}: Annotated[{self.alias} | None, NotNull] = None"

    def read_field(self) -> str:
        return f"{self.name}: {self.python_type}{' | None' if self.optional else ''}"

    # --- the generated tests: values as a client sends them in JSON ---------------------------

    def sample(self) -> object:
        """A valid value, written as the API answers it (so it reads back unchanged)."""
        return self._value("sampletext", 42, "1", "5", True, "2026-01-02", "03:04:05")

    def other_sample(self) -> object:
        """Another valid value, different from `sample`."""
        return self._value("changedtext", 7, "2", "2", False, "2026-03-04", "05:06:07")

    def _value(
        self, text: str, number: int, whole: str, digit: str, flag: bool, day: str, time: str
    ) -> object:
        if self.is_text:
            return (text * (1 + self.length // len(text)))[: min(self.length, len(text))]
        if self.kind == "int":
            return number
        if self.kind == "decimal":
            return whole + ("." + digit * self.places if self.places else "")
        if self.kind == "bool":
            return flag
        if self.kind == "date":
            return day
        return f"{day}T{time}Z"

    def invalid_values(self) -> list[tuple[str, str]]:
        """(test id, Python expression of a value the API must refuse with a 422)."""
        found: list[tuple[str, str]] = []
        if self.is_text:
            found.append((f"{self.name}-too-long", f'"x" * {self.length + 1}'))
        if self.kind == "str":
            found.append((f"{self.name}-blank", '"   "'))
        if self.kind == "int":
            found.append((f"{self.name}-too-big", str(INT_MAX + 1)))
        if self.kind == "decimal":
            found.append((f"{self.name}-too-many-digits", f'"{"9" * (self.digits + 1)}"'))
            found.append((f"{self.name}-not-a-number", '"NaN"'))
        if self.kind == "date":
            found.append((f"{self.name}-not-a-date", '"2026-02-30"'))
        if self.kind == "datetime":
            found.append((f"{self.name}-without-offset", '"2026-01-02T03:04:05"'))
        if not self.optional:
            found.append((f"{self.name}-null", "None"))
        return found


def parse_field(spec: str) -> Field:
    match = FIELD_SPEC.fullmatch(spec)
    if match is None:
        raise ScaffoldError(
            f"field {spec!r} is not name:type (types: {', '.join(KINDS)}; e.g. title:str(200))"
        )
    name, kind, args = match["name"], match["kind"], match["args"]
    if name in RESERVED_FIELDS or name.startswith("model_"):
        raise ScaffoldError(
            f"field {name!r} is reserved: every resource has that column, or the model, the "
            "schemas or their base classes use the name"
        )
    check_identifier(name, "field")
    if kind not in KINDS:
        raise ScaffoldError(f"field {name!r} has unknown type {kind!r} (types: {', '.join(KINDS)})")
    numbers = [int(part) for part in args.split(",")] if args and args.strip() else []
    optional = match["optional"] is not None
    if kind in {"str", "text"}:
        if len(numbers) != 1 or not 1 <= numbers[0] <= MAX_TEXT_LENGTH:
            raise ScaffoldError(
                f"field {name!r}: {kind} needs its maximum length, 1 to {MAX_TEXT_LENGTH}: "
                f"{kind}(200)"
            )
        return Field(name, kind, optional, length=numbers[0])
    if kind == "decimal":
        digits, places = (numbers[0], numbers[1]) if len(numbers) == 2 else DEFAULT_DECIMAL
        if len(numbers) not in {0, 2} or not 0 <= places < digits <= MAX_DECIMAL_DIGITS:
            raise ScaffoldError(
                f"field {name!r}: decimal takes (digits,places) with 0 <= places < digits <= "
                f"{MAX_DECIMAL_DIGITS}, e.g. decimal(12,2)"
            )
        return Field(name, kind, optional, digits=digits, places=places)
    if args is not None:
        raise ScaffoldError(f"field {name!r}: {kind} takes no arguments")
    return Field(name, kind, optional)


def parse_fields(specs: list[str]) -> list[Field]:
    if not specs:
        raise ScaffoldError('no fields given: fields="title:str(200) amount:decimal"')
    fields = [parse_field(spec) for spec in specs]
    names = [field.name for field in fields]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ScaffoldError(f"field {repeated[0]!r} is given more than once")
    return fields
