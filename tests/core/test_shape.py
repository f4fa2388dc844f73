"""The shape core: reading Electric's query strings and shape claims, and matching them.

Unit cases pin each rule; Hypothesis properties check the rules together over generated shapes,
encoded the way `@electric-sql/client` encodes them (the end-to-end proof with the real client is
in test_electric.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sidecar.core import shape
from sidecar.core.errors import Reason, ShapeMismatch
from sidecar.core.validator import Decision

SETTINGS = settings(max_examples=200, deadline=None, database=None)
CLAIM = "shape"


def matches(claim: Any, query: str) -> bool:
    try:
        shape.check({CLAIM: claim}, CLAIM, shape.from_query(query))
    except ShapeMismatch:
        return False
    return True


def refusal(claim: Any, query: str) -> str:
    with pytest.raises(ShapeMismatch) as caught:
        shape.check({CLAIM: claim}, CLAIM, shape.from_query(query))
    assert caught.value.reason is Reason.SHAPE_MISMATCH
    return caught.value.message


# -- reading the query string ------------------------------------------------------------------


def test_the_reference_query_of_the_typescript_client() -> None:
    query = (
        "columns=%22id%22%2C%22title%22&log=full&offset=-1&params%5B1%5D=alice&table=items"
        "&where=owner+%3D+%241"
    )
    assert shape.from_query(query) == shape.Shape(
        table="items",
        where="owner = $1",
        columns=frozenset({"id", "title"}),
        params=(("1", "alice"),),
    )


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("table=t&where=a+%2B+b", "a + b"),
        ("table=t&where=a%20=%20'x+y'", "a = 'x y'"),
        ("table=t&where=%C3%A9t%C3%A9", "été"),
        ("table=t&where=", None),
        ("table=t&where=+++", None),
        ("table=t", None),
    ],
)
def test_where_is_decoded_as_plug_decodes(query: str, where: str | None) -> None:
    assert shape.from_query(query).where == where


@pytest.mark.parametrize(
    ("columns", "names"),
    [
        ("id,title", {"id", "title"}),
        ("Id,TITLE", {"id", "title"}),
        ('"Id","TITLE"', {"Id", "TITLE"}),
        ('"a,b",c', {"a,b", "c"}),
        ('"fo""o",bar', {'fo"o', "bar"}),
    ],
)
def test_columns_follow_postgres_identifier_rules(columns: str, names: set[str]) -> None:
    assert shape.from_query("table=t&columns=" + quote(columns)).columns == frozenset(names)


@pytest.mark.parametrize("columns", ["id,", ",id", '""', "a b", '"id,"name"', "foo@bar", '"a"b"'])
def test_bad_columns_are_refused(columns: str) -> None:
    with pytest.raises(ShapeMismatch, match="column"):
        shape.from_query("table=t&columns=" + quote(columns))


@pytest.mark.parametrize(
    "query",
    [
        "table=a&table=b",
        "table=a&where=x&where=x",
        "table=a&columns=id&columns=id",
        "table=a&params[1]=x&params%5B1%5D=y",
        "tab%6Ce=a&table=a",
    ],
)
def test_a_repeated_shaping_parameter_is_refused(query: str) -> None:
    with pytest.raises(ShapeMismatch, match="is repeated"):
        shape.from_query(query)


@pytest.mark.parametrize(
    "query", ["table[x]=a", "table=a&where[]=x", "table=a&params=x", "table=a&params[1][2]=x"]
)
def test_nested_or_bare_shaping_parameters_are_refused(query: str) -> None:
    with pytest.raises(ShapeMismatch, match="Invalid shape request"):
        shape.from_query(query)


@pytest.mark.parametrize("query", ["table=a%", "table=a%2", "table=a%zz", "table=%FF"])
def test_undecodable_queries_are_refused(query: str) -> None:
    with pytest.raises(ShapeMismatch, match="Invalid shape request"):
        shape.from_query(query)


@pytest.mark.parametrize("query", ["", "offset=-1", "table=", "table=+", "where=x"])
def test_a_request_without_a_table_is_refused(query: str) -> None:
    with pytest.raises(ShapeMismatch, match='"table" is missing'):
        shape.from_query(query)


def test_protocol_and_unknown_parameters_are_ignored() -> None:
    query = (
        "table=items&offset=0_0&handle=h&handle=h2&live=true&cursor=1&live_sse=true&log=full"
        "&replica=full&cache-buster=x&expired_handle=e&subset__where=1&subset__params=%7B%7D"
        "&experimental_live_sse=true&token=abc&x[y]=z&&flag"
    )
    assert shape.from_query(query) == shape.Shape(table="items")


# -- reading the claim --------------------------------------------------------------------------


def test_claim_namespace_qualifies_the_table() -> None:
    claim = {"table": "items", "namespace": "app"}
    assert matches(claim, "table=app.items")
    assert not matches(claim, "table=items")


def test_claim_columns_as_a_list_are_names_as_they_are() -> None:
    claim = {"table": "t", "columns": ["id", "Title"]}
    assert matches(claim, "table=t&columns=" + quote('"id","Title"'))
    assert matches(claim, "table=t&columns=" + quote('"Title",id'))
    assert not matches(claim, "table=t&columns=id,Title")  # unquoted Title is `title`
    assert not matches(claim, "table=t&columns=id")
    assert not matches(claim, "table=t")


def test_claim_columns_as_a_string_follow_electric() -> None:
    claim = {"table": "t", "columns": 'id,"Title"'}
    assert matches(claim, "table=t&columns=" + quote('"id","Title"'))
    assert not matches(claim, "table=t&columns=" + quote('"id","title"'))


@pytest.mark.parametrize(
    "params", [["alice", "5"], {"1": "alice", "2": "5"}, {"2": "5", "1": "alice"}]
)
def test_claim_params_as_a_list_or_an_object(params: Any) -> None:
    claim = {"table": "t", "where": "a = $1 and b = $2", "params": params}
    where = "&where=a+%3D+%241+and+b+%3D+%242"
    assert matches(claim, "table=t" + where + "&params[1]=alice&params%5B2%5D=5")
    assert not matches(claim, "table=t" + where + "&params[1]=alice")
    assert not matches(claim, "table=t" + where + "&params[1]=bob&params[2]=5")
    assert not matches(claim, "table=t" + where + "&params[1]=alice&params[2]=5&params[3]=x")


@pytest.mark.parametrize(
    ("claim", "problem"),
    [
        ("items", "not an object"),
        ({}, '"table" is not a non-empty string'),
        ({"table": ""}, '"table" is not a non-empty string'),
        ({"table": 5}, '"table" is not a non-empty string'),
        ({"table": "t", "namespace": 1}, '"namespace" is not a string'),
        ({"table": "t", "where": ["x"]}, '"where" is not a string'),
        ({"table": "t", "columns": []}, '"columns" is not a list'),
        ({"table": "t", "columns": ["id", 1]}, '"columns" is not a list'),
        ({"table": "t", "columns": 'id,"x'}, "bad"),
        ({"table": "t", "params": "x"}, '"params" is not a list or an object'),
        ({"table": "t", "params": [1]}, '"params" values must be strings'),
    ],
)
def test_unreadable_claims_are_refused(claim: Any, problem: str) -> None:
    assert problem in refusal(claim, "table=t")


def test_the_message_names_the_field_that_differs() -> None:
    claim = {"table": "items", "where": "a = 1"}
    assert refusal(claim, "table=other&where=a+%3D+1") == (
        'Shape mismatch: the request\'s "table" is not the "shape" claim\'s'
    )
    assert '"where"' in refusal(claim, "table=items&where=a+%3D+2")
    assert '"where"' in refusal(claim, "table=items")


def test_a_token_without_the_claim_is_refused() -> None:
    with pytest.raises(ShapeMismatch, match='Token has no "shape" claim'):
        shape.check({"sub": "alice"}, CLAIM, shape.Shape(table="t"))


def test_from_request_reads_the_proto_fields() -> None:
    assert shape.from_request("items", "", [], []) == shape.Shape(table="items")
    assert shape.from_request("t", "a = $1", ["Id", "x"], ["v"]) == shape.Shape(
        table="t", where="a = $1", columns=frozenset({"Id", "x"}), params=(("1", "v"),)
    )
    with pytest.raises(ShapeMismatch, match='"table" is missing'):
        shape.from_request("", "", [], [])


def test_authorize_turns_only_valid_decisions_into_refusals() -> None:
    def query(text: str) -> Callable[[], shape.Shape]:
        return lambda: shape.from_query(text)

    valid = Decision(valid=True, user_id="alice", claims={"sub": "alice"})
    refused = shape.authorize(valid, CLAIM, query("table=t"))
    assert (refused.valid, refused.reason) == (False, Reason.SHAPE_MISMATCH)
    assert refused.message == 'Token has no "shape" claim'
    assert refused.claims == {} and refused.user_id == ""
    expired = Decision(valid=False, reason=Reason.EXPIRED, message="Expired token")
    assert shape.authorize(expired, CLAIM, query("table=a&table=b")) is expired
    allowed = Decision(valid=True, user_id="a", claims={CLAIM: {"table": "t"}})
    assert shape.authorize(allowed, CLAIM, query("table=t&offset=-1")) is allowed
    repeated = shape.authorize(allowed, CLAIM, query("table=t&table=t"))
    assert (repeated.reason, repeated.message) == (
        Reason.SHAPE_MISMATCH,
        'Invalid shape request: "table" is repeated',
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/shape", True),
        ("/v1/shape/", True),
        ("//v1//shape", True),
        ("/v1/%73hape", True),
        ("/v1/shapes", False),
        ("/v1/shape/x", False),
        ("/v1", False),
        ("/v2/shape", False),
    ],
)
def test_shape_path_compares_segments(path: str, expected: bool) -> None:
    assert shape.is_shape_path(path, shape.path_matcher("/v1/shape")) is expected


# -- properties ---------------------------------------------------------------------------------

PROTOCOL: tuple[str, ...] = ("offset", "handle", "live", "cursor", "live_sse", "log", "replica")
PROTOCOL += ("cache-buster", "expired_handle", "experimental_live_sse")
PROTOCOL += ("subset__where", "subset__params")

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
ident = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
column = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
where = text.filter(lambda w: w.strip() != "")


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    claim: dict[str, Any] = {"table": draw(ident)}
    if draw(st.booleans()):
        claim["namespace"] = draw(ident)
    if draw(st.booleans()):
        claim["where"] = draw(where)
    if draw(st.booleans()):
        claim["columns"] = draw(st.lists(column, min_size=1, max_size=4, unique=True))
    params = draw(st.lists(text, max_size=3))
    if params:
        claim["params"] = (
            params if draw(st.booleans()) else {str(i): v for i, v in enumerate(params, 1)}
        )
    return claim


def encode(value: str, style: int) -> str:
    """Form encoding as URLSearchParams does, or with every byte escaped and spaces as %20."""
    if style == 0:
        return quote(value, safe="*-._").replace("%20", "+")
    return "".join(f"%{byte:02X}" for byte in value.encode())


def params_of(claim: dict[str, Any]) -> list[str]:
    params = claim.get("params", [])
    return list(params.values()) if isinstance(params, dict) else list(params)


def client_pairs(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """The shaping parameters as `ShapeStream` sends the claim's shape (see the module doc)."""
    table = claim["table"] if "namespace" not in claim else f"{claim['namespace']}.{claim['table']}"
    pairs = [("table", table)]
    if "where" in claim:
        pairs.append(("where", claim["where"]))
    if "columns" in claim:
        pairs.append(("columns", ",".join(quoted(c) for c in claim["columns"])))
    pairs += [(f"params[{n}]", v) for n, v in enumerate(params_of(claim), 1)]
    return pairs


def query_of(pairs: list[tuple[str, str]], style: int) -> str:
    return "&".join(f"{encode(k, style)}={encode(v, style)}" for k, v in pairs)


protocol_pairs = st.lists(st.tuples(st.sampled_from(PROTOCOL), text), max_size=6)


@SETTINGS
@given(claims(), protocol_pairs, st.randoms(use_true_random=False), st.integers(0, 1))
def test_the_clients_encoding_of_a_claim_always_matches(
    claim: dict[str, Any], protocol: list[tuple[str, str]], random: Any, style: int
) -> None:
    pairs = client_pairs(claim) + protocol
    random.shuffle(pairs)
    assert matches(claim, query_of(pairs, style))


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@SETTINGS
@given(claims(), st.sampled_from(("table", "where", "columns", "params")), text, st.integers(0, 1))
def test_changing_any_shaping_parameter_never_matches(
    claim: dict[str, Any], changed: str, value: str, style: int
) -> None:
    pairs = dict(client_pairs(claim))
    if changed == "params":
        pairs[f"params[{len(params_of(claim)) + 1}]"] = value
    elif changed == "columns":
        assume(value + "x" not in claim.get("columns", []))
        pairs["columns"] = ",".join(filter(None, [pairs.get("columns"), quoted(value + "x")]))
    else:
        pairs[changed] = pairs.get(changed, "") + value + "x"
    assert not matches(claim, query_of(list(pairs.items()), style))


@SETTINGS
@given(claims(), claims(), protocol_pairs)
def test_protocol_parameters_never_matter(
    claim: dict[str, Any], other: dict[str, Any], protocol: list[tuple[str, str]]
) -> None:
    for candidate in (claim, other):
        bare = query_of(client_pairs(candidate), 0)
        with_protocol = query_of(client_pairs(candidate) + protocol, 1)
        assert matches(claim, bare) == matches(claim, with_protocol)


@SETTINGS
@given(claims(), st.data())
def test_a_repeated_shaping_parameter_is_always_refused(claim: dict[str, Any], data: Any) -> None:
    pairs = client_pairs(claim)
    name, value = data.draw(st.sampled_from(pairs))
    pairs.insert(
        data.draw(st.integers(0, len(pairs))), (name, data.draw(st.sampled_from([value, "x"])))
    )
    with pytest.raises(ShapeMismatch, match="is repeated"):
        shape.from_query(query_of(pairs, data.draw(st.integers(0, 1))))


@SETTINGS
@given(st.text(max_size=60))
def test_any_query_string_is_read_or_refused_clearly(query: str) -> None:
    try:
        shape.from_query(query)
    except ShapeMismatch as error:
        assert error.message.startswith("Invalid shape request")
