"""The run search grammar, against every metadata backend."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lockgate as lg
from lockgate.tracking import parse_filter, parse_order_by


def _seed(ws: lg.Workspace) -> dict[str, str]:
    """Four runs in 'fraud' and one elsewhere; returns name -> id."""
    ids: dict[str, str] = {}
    spec = [
        ("rf-shallow", {"model": "rf", "max_depth": 3}, {"auc": 0.81, "val-auc": 0.79}, {"team": "fraud-core"}),
        ("rf-deep", {"model": "rf", "max_depth": 12}, {"auc": 0.93, "val-auc": 0.88}, {"team": "fraud-core"}),
        ("gbm", {"model": "gbm", "max_depth": 6}, {"auc": 0.91}, {"team": "Risk"}),
        ("baseline", {"model": "dummy"}, {}, {}),
    ]
    for name, params, metrics, tags in spec:
        with ws.start_run(name, experiment="fraud", params=params, tags=tags) as run:
            run.log_metrics(metrics)
        ids[name] = run.id
    with pytest.raises(RuntimeError), ws.start_run("crashed", experiment="fraud", params={"model": "rf"}) as run:
        raise RuntimeError("boom")
    ids["crashed"] = run.id
    with ws.start_run("other", experiment="churn", params={"model": "rf"}) as run:
        run.log_metric("auc", 0.99)
    ids["other"] = run.id
    return ids


# name-sets each filter must return within experiment 'fraud'
CASES: list[tuple[str, set[str]]] = [
    ("", {"rf-shallow", "rf-deep", "gbm", "baseline", "crashed"}),
    ("metrics.auc > 0.9", {"rf-deep", "gbm"}),
    ("metrics.auc >= 0.91", {"rf-deep", "gbm"}),
    ("metrics.auc < 0.9", {"rf-shallow"}),
    ("metrics.auc <= 0.81", {"rf-shallow"}),
    ("metrics.auc = 0.93", {"rf-deep"}),
    ("metrics.auc == 0.93", {"rf-deep"}),
    ("metrics.auc != 0.93", {"rf-shallow", "gbm"}),  # runs without the metric never match
    ("metrics.`val-auc` > 0.8", {"rf-deep"}),
    ("metric.val-auc > 0.8", {"rf-deep"}),
    ("params.model = 'rf'", {"rf-shallow", "rf-deep", "crashed"}),
    ('params.model = "gbm"', {"gbm"}),
    ("params.max_depth = 6", {"gbm"}),  # a number against a param compares its text
    ("params.max_depth = '12'", {"rf-deep"}),
    ("params.model != 'rf'", {"gbm", "baseline"}),
    ("params.model IN ('gbm', 'dummy')", {"gbm", "baseline"}),
    ("params.model NOT IN ('rf')", {"gbm", "baseline"}),
    ("params.model LIKE 'r%'", {"rf-shallow", "rf-deep", "crashed"}),
    ("tags.team LIKE 'fraud%'", {"rf-shallow", "rf-deep"}),
    ("tags.team ILIKE 'risk'", {"gbm"}),
    ("tags.team = 'Risk'", {"gbm"}),
    ("attributes.status = 'FAILED'", {"crashed"}),
    ("attributes.status IN ('FINISHED', 'FAILED') and params.model = 'rf'", {"rf-shallow", "rf-deep", "crashed"}),
    ("attributes.status NOT IN ('FINISHED')", {"crashed"}),
    ("attributes.name LIKE 'rf-%'", {"rf-shallow", "rf-deep"}),
    ("run.run_name = 'gbm'", {"gbm"}),
    ("attributes.start_time > 0", {"rf-shallow", "rf-deep", "gbm", "baseline", "crashed"}),
    ("attributes.end_time < 0", set()),
    ("metrics.auc > 0.8 AND params.model = 'rf' and tags.team = 'fraud-core'", {"rf-shallow", "rf-deep"}),
    ("metrics.auc IN (0.81, 0.91)", {"rf-shallow", "gbm"}),
    ("params.model = 'rf' and params.model = 'gbm'", set()),
]


def test_the_filter_grammar_finds_the_same_runs_on_every_backend(backend_ws: lg.Workspace) -> None:
    _seed(backend_ws)
    for text, expected in CASES:
        found = {r.name for r in backend_ws.runs.search(text, experiment="fraud")}
        assert found == expected, text


def test_ordering_experiments_limits_and_missing_keys_on_every_backend(backend_ws: lg.Workspace) -> None:
    _seed(backend_ws)

    def names(**kwargs: object) -> list[str]:
        return [r.name for r in backend_ws.runs.search(**kwargs)]  # type: ignore[arg-type]

    # Runs without the key sort last, in both directions.
    assert names(experiment="fraud", order_by="metrics.auc desc")[:3] == ["rf-deep", "gbm", "rf-shallow"]
    assert names(experiment="fraud", order_by="metrics.auc desc")[3:] == ["crashed", "baseline"]
    assert names(experiment="fraud", order_by=["metrics.auc"])[:3] == ["rf-shallow", "gbm", "rf-deep"]
    assert set(names(experiment="fraud", order_by=["metrics.auc asc"])[3:]) == {"crashed", "baseline"}
    assert names(experiment="fraud", order_by="params.model desc, metrics.auc desc")[:4] == [
        "rf-deep",
        "rf-shallow",
        "crashed",
        "gbm",
    ]
    assert names(experiment="fraud", order_by="name")[:2] == ["baseline", "crashed"]
    assert names(experiment="fraud", order_by="metrics.auc desc", max_results=1) == ["rf-deep"]
    # Without an ordering: newest first.
    assert names(experiment="fraud")[0] == "crashed"
    assert names(filter="metrics.auc > 0.95") == ["other"]
    assert set(names(filter="params.model = 'rf'", experiment=["fraud", "churn"])) == {
        "rf-shallow",
        "rf-deep",
        "crashed",
        "other",
    }
    assert names(experiment="no-such-experiment") == []


BAD_FILTERS: list[tuple[str, str]] = [
    ("metrics.auc >", "expected a value after >"),
    ("metrics.auc", "expected a comparison operator"),
    ("metrics.auc 0.9", "is not an operator"),
    ("metrics.auc > 0.9 or params.model = 'rf'", "only 'and' is supported"),
    ("metrics.auc > 0.9 and", "expected a field"),
    ("metrics.auc > 0.9 params.x = '1'", "expected 'and'"),
    ("auc > 0.9", "expected a field"),
    ("foo.bar = 1", "unknown field type 'foo'"),
    ("attributes.colour = 'red'", "unknown attribute 'colour'; known attributes:"),
    ("metrics.auc LIKE '0.9%'", "LIKE needs text"),
    ("metrics.auc = 'high'", "is a number; compare it with a number"),
    ("metrics.auc IN ('high')", "must hold numbers"),
    ("metrics.auc IN ()", "expected a value in the list"),
    ("params.model IN ('rf'", "expected ',' or ')'"),
    ("params.model = 'rf", "cannot read"),
    ("params.model ~ 'rf'", "cannot read"),
    ("params.model = 'r\x00f'", "NUL"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_FILTERS)
def test_bad_filters_say_what_is_wrong_in_one_sentence(ws: lg.Workspace, text: str, fragment: str) -> None:
    with pytest.raises(lg.InvalidInputError) as info:
        ws.runs.search(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("search filter: ")
    assert "\n" not in message
    assert isinstance(info.value, ValueError)  # ordinary handlers still catch it


@pytest.mark.parametrize("order", ["metrics.auc sideways", "metrics.auc desc extra", "colour", "foo.bar"])
def test_bad_orderings_are_refused(ws: lg.Workspace, order: str) -> None:
    with pytest.raises(lg.InvalidInputError):
        ws.runs.search(order_by=order)


def test_parsed_clauses_have_the_types_the_store_expects() -> None:
    (clause,) = parse_filter("params.max_depth = 6.0")
    assert clause.value == "6"
    (clause,) = parse_filter("metrics.auc IN (1, 2.5)")
    assert clause.value == (1.0, 2.5)
    (clause,) = parse_filter(r"tags.note = 'it\'s'")
    assert clause.value == "it's"
    (order,) = parse_order_by("start_time desc")
    assert (order.field.kind, order.field.key, order.descending) == ("attribute", "start_time", True)


# -- fuzzing: whatever the text, the only failure is InvalidInputError ---------------------------

_WORDS = st.sampled_from(
    [
        "metrics.auc",
        "params.model",
        "tags.team",
        "attributes.status",
        "attributes.start_time",
        "metrics.`val-auc`",
        "run.name",
        "foo.bar",
        "and",
        "or",
        "AND",
        "IN",
        "NOT",
        "LIKE",
        "ILIKE",
        "=",
        "==",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "(",
        ")",
        ",",
        "'rf'",
        "'%'",
        "'\\''",
        '"x"',
        "0.9",
        "-1e400",
        "1e400",
        "12345678901234567890",
        ".5",
        "'nan'",
        "'inf'",
        "'\x00'",
        "`",
        "'",
    ]
)
_TOKEN_SOUP = st.lists(st.one_of(_WORDS, st.text(max_size=4)), max_size=12).map(" ".join)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_TEXT_FIELD = st.sampled_from(["params.model", "tags.team", "attributes.status", "attributes.name", "params.`a b`"])
_NUMBER_FIELD = st.sampled_from(["metrics.auc", "attributes.start_time", "metrics.`val-auc`"])
# Characters that have tripped SQL layers before, mixed into otherwise arbitrary text.
_TRICKY = st.sampled_from(["\x00", "%", "_", "\\", "'", '"', "`", "\n", "\u00e9", "\U0001f600", "\ud7ff"])
_TEXT = st.lists(st.one_of(_TRICKY, st.characters()), max_size=8).map("".join).map(_quoted)
_NUMBER = st.one_of(st.floats().map(repr), st.integers(min_value=-(2**70), max_value=2**70).map(str))
_OPS = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE"])
_CLAUSE = st.one_of(
    st.tuples(_TEXT_FIELD, _OPS, _TEXT).map(" ".join),
    st.tuples(_NUMBER_FIELD, _OPS, _NUMBER).map(" ".join),
    st.tuples(st.one_of(_TEXT_FIELD, _NUMBER_FIELD), _OPS, st.one_of(_TEXT, _NUMBER)).map(" ".join),
    st.tuples(
        st.one_of(_TEXT_FIELD, _NUMBER_FIELD),
        st.sampled_from(["IN", "NOT IN"]),
        st.lists(st.one_of(_TEXT, _NUMBER), min_size=1, max_size=3),
    ).map(lambda t: f"{t[0]} {t[1]} ({', '.join(t[2])})"),
)
_FILTER = st.lists(_CLAUSE, min_size=1, max_size=3).map(" and ".join)
# Mostly well-formed filters with arbitrary values (where backends differ), some token soup,
# some plain noise.
_ANY_TEXT = st.one_of(_FILTER, _FILTER, _TOKEN_SOUP, st.text(max_size=40))


@settings(max_examples=400, deadline=None)
@given(text=_ANY_TEXT)
def test_parsing_never_fails_with_anything_but_invalid_input(text: str) -> None:
    with contextlib.suppress(lg.InvalidInputError):
        parse_filter(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_ANY_TEXT)
def test_searching_never_fails_with_anything_but_invalid_input(backend_ws: lg.Workspace, text: str) -> None:
    if not backend_ws.runs.list(limit=1):
        _seed(backend_ws)
    with contextlib.suppress(lg.InvalidInputError):
        backend_ws.runs.search(text)


def test_like_patterns_mean_the_same_on_every_backend(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run("a", experiment="like", params={"path": "data_2026%"}):
        pass
    with backend_ws.start_run("b", experiment="like", params={"path": "data-2026x"}):
        pass
    # Quoted strings take backslash escapes, so a LIKE escape is written as two backslashes.
    found = backend_ws.runs.search(r"params.path LIKE 'data\\_2026\\%'", experiment="like")
    assert [r.name for r in found] == ["a"]
    with pytest.raises(lg.InvalidInputError, match="lone backslash"):
        backend_ws.runs.search("params.path LIKE 'data\\\\'", experiment="like")
