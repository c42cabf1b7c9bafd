"""References look alike everywhere: models:/, runs:/, datasets:/."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lockgate as lg
from lockgate.refs import DatasetRef, FeatureRef, ModelRef, RunRef, parse_model_ref, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/fraud/3", ModelRef("fraud", 3)),
        ("models:/fraud@champion", ModelRef("fraud", alias="champion")),
        ("models:/fraud.v2-x_y/12", ModelRef("fraud.v2-x_y", 12)),
        ("runs:/0123abcd", RunRef("0123abcd")),
        ("datasets:/transactions", DatasetRef("transactions")),
        ("datasets:/transactions@latest", DatasetRef("transactions", "latest")),
        ("datasets:/transactions@9f86d081", DatasetRef("transactions", "9f86d081")),
        ("features:/card_aggregates", FeatureRef("card_aggregates")),
        ("features:/card_aggregates@13e35170", FeatureRef("card_aggregates", "13e35170")),
    ],
)
def test_references_parse_and_print_back(text: str, expected: object) -> None:
    assert parse_ref(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fraud",
        "models:/",
        "models:/fraud",
        "models:/fraud/",
        "models:/fraud/-1",
        "models:/fraud/1.5",
        "models:/fraud@",
        "models:/fraud@1st",
        "models:/fraud/1@champion",
        "models:/-fraud/1",
        "models://fraud/1",
        "runs:/",
        "runs:/xyz",
        "runs:/ABCD",
        "runs:/" + "a" * 33,
        "datasets:/transactions@",
        "datasets:/transactions@XYZ",
        "features:/card-aggregates",
        "features:/card_aggregates@XYZ",
        " models:/fraud/1",
        "models:/fraud/1 ",
        "models:/fraud/1\n",
    ],
)
def test_anything_else_is_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(lg.InvalidReferenceError) as info:
        parse_ref(text)
    message = str(info.value)
    assert message.startswith(f"{text!r} is not a ")
    assert "models:/fraud/3" in message
    assert "models:/fraud@champion" in message
    assert isinstance(info.value, lg.InvalidInputError)
    if not text.startswith("models:/"):
        assert "datasets:/transactions@<hash> or features:/card_aggregates" in message


@pytest.mark.parametrize("text", ["runs:/abcd1234", "datasets:/x", "fraud", "models://fraud/1"])
def test_a_model_reference_must_be_one(text: str) -> None:
    with pytest.raises(lg.InvalidReferenceError, match="use models:/NAME/VERSION or models:/NAME@ALIAS"):
        parse_model_ref(text)


_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,30}", fullmatch=True)
_ALIASES = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,20}", fullmatch=True)
_REFS = st.one_of(
    st.builds(ModelRef, _NAMES, st.integers(min_value=0, max_value=10**9)),
    st.builds(lambda n, a: ModelRef(n, alias=a), _NAMES, _ALIASES),
    st.builds(RunRef, st.from_regex(r"[0-9a-f]{4,32}", fullmatch=True)),
    st.builds(DatasetRef, _NAMES, st.one_of(st.none(), st.from_regex(r"[0-9a-f]{4,64}", fullmatch=True))),
)


@given(_REFS)
def test_every_reference_survives_printing_and_parsing(ref: ModelRef | RunRef | DatasetRef) -> None:
    assert parse_ref(str(ref)) == ref


@given(st.text(max_size=40))
def test_parsing_arbitrary_text_fails_only_with_invalid_reference(text: str) -> None:
    with contextlib.suppress(lg.InvalidReferenceError):
        parse_ref(text)
