"""Entity-tags and their comparison (RFC 9110 sections 8.8.3 and 13.1)."""

import pytest
from pydantic import BaseModel

from app.core.http_cache import NO_TAGS, EntityTag, TagList, etag_of, parse_tag_list

STRONG = EntityTag("abc")
WEAK = EntityTag("abc", weak=True)


class Thing(BaseModel):
    name: str
    size: int | None = None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"abc"', (STRONG,)),
        ('W/"abc"', (WEAK,)),
        ('"a", W/"b" ,"c"', (EntityTag("a"), EntityTag("b", weak=True), EntityTag("c"))),
        ('"a,b"', (EntityTag("a,b"),)),  # a comma may sit inside the quotes
        ('""', (EntityTag(""),)),
        (' , "a",, ,"b", ', (EntityTag("a"), EntityTag("b"))),  # empty elements are ignored
        ("", ()),
        ('"caf\xe9"', (EntityTag("caf\xe9"),)),  # obs-text, as the server decodes it
    ],
)
def test_valid_lists_parse(value: str, expected: tuple[EntityTag, ...]) -> None:
    assert parse_tag_list(value) == TagList(any=False, tags=expected)


@pytest.mark.parametrize("value", ["*", " * ", "\t*"])
def test_star_means_any(value: str) -> None:
    parsed = parse_tag_list(value)
    assert parsed.any
    assert parsed.matches_strongly(STRONG)
    assert parsed.matches_weakly(STRONG)


@pytest.mark.parametrize(
    "value",
    [
        "abc",  # not quoted
        '"abc',  # not closed
        'w/"abc"',  # W/ is case-sensitive
        '"a" "b"',  # no comma between
        '"a"b',
        '*, "a"',  # * stands alone
        '"a b"',  # no space inside
        '"a\\"b"',  # no escapes either
        '"\x7f"',
        "W/",
        '"a", junk',
    ],
)
def test_malformed_values_match_nothing(value: str) -> None:
    parsed = parse_tag_list(value)
    assert parsed == NO_TAGS
    assert not parsed.matches_weakly(STRONG)
    assert not parsed.matches_strongly(STRONG)


def test_if_match_compares_strongly() -> None:
    assert parse_tag_list('"abc"').matches_strongly(STRONG)
    assert parse_tag_list('"x", "abc"').matches_strongly(STRONG)
    assert not parse_tag_list('W/"abc"').matches_strongly(STRONG)
    assert not parse_tag_list('"abc"').matches_strongly(WEAK)
    assert not parse_tag_list('"abcd"').matches_strongly(STRONG)


def test_if_none_match_compares_weakly() -> None:
    assert parse_tag_list('"abc"').matches_weakly(STRONG)
    assert parse_tag_list('W/"abc"').matches_weakly(STRONG)
    assert parse_tag_list('"x", W/"abc"').matches_weakly(STRONG)
    assert parse_tag_list('"abc"').matches_weakly(WEAK)
    assert not parse_tag_list('"ab"').matches_weakly(STRONG)


def test_tags_render_as_sent() -> None:
    assert str(STRONG) == '"abc"'
    assert str(WEAK) == 'W/"abc"'
    assert parse_tag_list(str(WEAK)).tags == (WEAK,)


def test_the_etag_is_strong_and_follows_the_representation_exactly() -> None:
    tag = etag_of(Thing(name="a"))
    assert not tag.weak
    assert parse_tag_list(str(tag)).tags == (tag,)  # a valid entity-tag, unchanged by a trip
    assert etag_of(Thing(name="a")) == tag
    assert etag_of(Thing(name="a", size=None)) == tag  # same JSON, same tag
    assert etag_of(Thing(name="b")) != tag
    assert etag_of(Thing(name="a", size=0)) != tag
