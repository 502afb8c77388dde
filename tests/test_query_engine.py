"""Unit tests of the query engine: `standard.query` (wire forms -> syntax tree) and
`standard.plan` (binding to a registry profile). No server, no database."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from dcihub.standard.codes import SearchReason
from dcihub.standard.errors import ItemRejected
from dcihub.standard.messages import SearchCriteria
from dcihub.standard.plan import (
    ANY_ID,
    BAll,
    BAny,
    BNot,
    Bound,
    Cond,
    IdCond,
    IdIn,
    Limits,
    bind,
    bind_pagination,
    bind_sort,
    choose_entity,
    plan_search,
    shift_years,
)
from dcihub.standard.profiles import PROFILES
from dcihub.standard.query import (
    MAX_NODES,
    All,
    AnyOf,
    Compare,
    IdentifierIs,
    Not,
    ParsedQuery,
    attributes_of,
    count_terms,
    parse_query,
)

CRVS = PROFILES["crvs"]
SOCIAL = PROFILES["social"]
DR = PROFILES["dr"]
IBR = PROFILES["ibr"]
PERSON = CRVS.entity("Person")
GROUP = SOCIAL.entity("Group")
MEMBER = SOCIAL.entity("Member")
TODAY = date(2026, 3, 15)
CRITERIA = SearchReason.SEARCH_CRITERIA_INVALID


def e(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"attribute_name": name, "operator": op, "attribute_value": value}


def item(
    seq: Any, e1: dict[str, Any], condition: str | None = None, e2: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"seq_num": seq, "expression1": e1}
    if condition is not None:
        out["condition"] = condition
    if e2 is not None:
        out["expression2"] = e2
    return out


def template(document: dict[str, Any], collection: str | None = None) -> dict[str, Any]:
    expression: dict[str, Any] = {"query": document}
    if collection:
        expression["collection"] = collection
    return {"type": "ns:org:QueryType:NoSql", "value": {"expression": expression}}


def rejected(fn: Any, *args: Any, code: str = CRITERIA) -> str:
    with pytest.raises(ItemRejected) as info:
        fn(*args)
    assert info.value.code == code
    return info.value.message


def criteria(query_type: str = "predicate", query: Any = None, **extra: Any) -> SearchCriteria:
    return SearchCriteria.model_validate({"query_type": query_type, "query": query or [], **extra})


def bound(profile: Any, entity: Any, query_type: str, query: Any) -> Bound:
    return bind(profile, entity, parse_query(query_type, query).node, TODAY)


# ---------------------------------------------------------------------------------------------
# idtype-value


def test_idtype_value_newest_and_legacy_shapes():
    assert parse_query("idtype-value", {"type": "UIN", "value": "847951632"}).node == IdentifierIs(
        "UIN", "847951632"
    )
    legacy = {"identifier_type": "BRN", "identifier_value": "BRN-1"}
    assert parse_query("idtype-value", legacy).node == IdentifierIs("BRN", "BRN-1")
    # A number is read as the identifier's text; blanks around are dropped.
    assert parse_query("idtype-value", {"type": " UIN ", "value": 12345}).node == IdentifierIs(
        "UIN", "12345"
    )
    # query_type is case-insensitive and trimmed
    assert parse_query(" IdType-Value ", {"type": "UIN", "value": "1"}).node == IdentifierIs(
        "UIN", "1"
    )


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ({"value": "1"}, "query.type"),
        ({"type": "", "value": "1"}, "query.type"),
        ({"type": "UIN"}, "query.value"),
        ({"type": "UIN", "value": {"a": 1}}, "query.value must be a string"),
        ({"type": "UIN", "value": True}, "query.value must be a string"),
        ({"type": "UIN", "value": "  "}, "must not be empty"),
        ({"type": "UIN", "value": "9" * 257}, "longer than 256"),
        ("UIN 1", "must be an object"),
    ],
    ids=[
        "no-type",
        "empty-type",
        "no-value",
        "object-value",
        "bool-value",
        "blank-value",
        "long-value",
        "not-an-object",
    ],
)
def test_idtype_value_errors_name_the_field(query: Any, mentions: str):
    assert mentions in rejected(parse_query, "idtype-value", query)


def test_identifier_binding_canonicalises_type_and_finds_its_owner():
    node = bound(CRVS, PERSON, "idtype-value", {"type": "nid", "value": "42"})
    assert node == IdCond("Person", "UIN", "42")
    # In the Social Registry a HHID belongs to the household, a UIN to the member.
    assert bound(SOCIAL, MEMBER, "idtype-value", {"type": "HHID", "value": "H1"}) == IdCond(
        "Group", "HHID", "H1"
    )
    assert bound(SOCIAL, GROUP, "idtype-value", {"type": "UIN", "value": "7"}) == IdCond(
        "Member", "UIN", "7"
    )
    message = rejected(bound, CRVS, PERSON, "idtype-value", {"type": "PASSPORT", "value": "1"})
    assert "'PASSPORT'" in message and "UIN" in message


# ---------------------------------------------------------------------------------------------
# predicate


def test_predicate_items_are_sorted_by_seq_num_and_anded():
    query = [
        item(3, e("sex", "eq", "female")),
        item(1, e("age", "gt", "18")),
        item("2", e("marital_status", "eq", "W")),
    ]
    node = parse_query("predicate", query).node
    assert node == All(
        (
            Compare("age", "gt", "18"),
            Compare("marital_status", "eq", "W"),
            Compare("sex", "eq", "female"),
        )
    )


def test_predicate_without_seq_num_keeps_list_order_and_ties_are_stable():
    query = [
        item(None, e("a", "eq", 1)),
        item("", e("b", "eq", 2)),
        item(1, e("c", "eq", 3)),
        item(1, e("d", "eq", 4)),
    ]
    node = parse_query("predicate", query).node
    # missing seq_num = its index (0, 1); then the two seq_num 1 items in list order
    assert [p.attribute for p in node.parts] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("and", All((Compare("sex", "eq", "male"), Compare("age", "lt", "5")))),
        ("or", AnyOf((Compare("sex", "eq", "male"), Compare("age", "lt", "5")))),
        ("not", All((Compare("sex", "eq", "male"), Not(Compare("age", "lt", "5"))))),
        ("AND", All((Compare("sex", "eq", "male"), Compare("age", "lt", "5")))),
    ],
)
def test_predicate_conditions(condition: str, expected: Any):
    query = [item(1, e("sex", "eq", "male"), condition, e("age", "lt", "5"))]
    assert parse_query("predicate", query).node == expected


def test_predicate_operator_is_case_insensitive_and_names_trimmed():
    node = parse_query("predicate", [item(1, e(" sex ", "EQ", "male"))]).node
    assert node == Compare("sex", "eq", "male")


def test_single_predicate_object_and_single_expression_are_accepted():
    assert parse_query("predicate", item(1, e("sex", "eq", "male"))).node == Compare(
        "sex", "eq", "male"
    )
    assert parse_query("predicate", e("sex", "eq", "male")).node == Compare("sex", "eq", "male")
    # Older samples label predicate lists "expression"; they are read the same way.
    assert parse_query("expression", [item(1, e("sex", "eq", "male"))]).node == Compare(
        "sex", "eq", "male"
    )
    assert parse_query("expression", e("age", "ge", 3)).node == Compare("age", "ge", 3)


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ([], "non-empty list"),
        ({"foo": 1}, "non-empty list"),
        ([5], "query[0] must be an object"),
        ([item(1, e("age", "gte", "1"))], "query[0].expression1.operator 'gte'"),
        ([item(1, e("age", "ne", "1"))], "operator 'ne'"),
        ([item(1, e("age", "$gt", "1"))], "operator '$gt'"),
        ([item(1, {"operator": "eq", "attribute_value": 1})], "expression1.attribute_name"),
        ([item(1, {"attribute_name": "age", "operator": "eq"})], "expression1.attribute_value"),
        ([item(1, "age > 1")], "expression1 must be an object"),
        ([{"seq_num": 1}], "query[0].expression1 is required"),
        ([item(1, e("a", "eq", 1), "and")], "no expression2"),
        ([item(1, e("a", "eq", 1), None, e("b", "eq", 2))], "no condition"),
        ([item(1, e("a", "eq", 1), "xor", e("b", "eq", 2))], "condition 'xor'"),
        ([item(1, e("a", "eq", 1), "and", e("b", "gte", 2))], "expression2.operator 'gte'"),
        (
            [{**item(1, e("a", "eq", 1), "and", e("b", "eq", 2)), "expression3": e("c", "eq", 3)}],
            "expression3",
        ),
        ([item("first", e("a", "eq", 1))], "seq_num 'first'"),
        ([item(True, e("a", "eq", 1))], "seq_num must be a number"),
        ([item("inf", e("a", "eq", 1))], "seq_num 'inf' is not a finite number"),
    ],
    ids=[
        "empty",
        "object",
        "item-not-object",
        "gte",
        "ne",
        "mongo-op",
        "no-name",
        "no-value",
        "text-expression",
        "no-expression1",
        "condition-alone",
        "expression2-alone",
        "unknown-condition",
        "bad-operator-in-expression2",
        "expression3",
        "seq-num-text",
        "seq-num-bool",
        "seq-num-infinite",
    ],
)
def test_predicate_errors_name_the_offending_part(query: Any, mentions: str):
    message = rejected(parse_query, "predicate", query)
    assert mentions in message
    assert message.startswith("search_criteria.query")


def test_predicate_with_more_than_max_nodes_is_refused():
    query = [item(i, e("age", "gt", i)) for i in range(MAX_NODES + 1)]
    assert f"more than {MAX_NODES}" in rejected(parse_query, "predicate", query)


def test_unknown_and_graphql_query_types():
    assert "'sql'" in rejected(parse_query, "sql", {})
    assert "graphql" in rejected(parse_query, "graphql", {"type": "graphql", "value": {}})
    assert "'None'" in rejected(parse_query, None, {})


# ---------------------------------------------------------------------------------------------
# expression: Mongo subset, flat DR/IBR form, ExpTemplate


def test_mongo_subset_operators():
    document = {
        "$and": [
            {"poverty_score": {"$lt": 5}},
            {"$or": [{"group_size": {"$gte": 3}}, {"group_size": {"$lte": 1}}]},
            {"$not": {"region_code": {"$in": ["XX-A", "XX-B"]}}},
            {"locality": {"$eq": "Pellan"}},
            {"registration_date": {"$gt": "2020-01-01"}},
        ]
    }
    parsed = parse_query("expression", template(document, collection="Group"))
    assert parsed.collection == "Group"
    assert parsed.node == All(
        (
            Compare("poverty_score", "lt", 5),
            AnyOf((Compare("group_size", "ge", 3), Compare("group_size", "le", 1))),
            Not(Compare("region_code", "in", ["XX-A", "XX-B"])),
            Compare("locality", "eq", "Pellan"),
            Compare("registration_date", "gt", "2020-01-01"),
        )
    )


def test_mongo_implicit_eq_multiple_ops_and_implicit_and():
    node = parse_query(
        "expression", template({"sex": "female", "age": {"$gte": 18, "$lt": 60}})
    ).node
    assert node == All(
        (Compare("sex", "eq", "female"), All((Compare("age", "ge", 18), Compare("age", "lt", 60))))
    )
    # field-level $not
    assert parse_query("expression", template({"age": {"$not": {"$lt": 18}}})).node == Not(
        Compare("age", "lt", 18)
    )


def test_expression_template_without_query_key_and_bare_document():
    shape = {
        "type": "ns:org:QueryType:expression",
        "value": {"expression": {"collection": "Member", "sex": "male"}},
    }
    parsed = parse_query("expression", shape)
    assert parsed == ParsedQuery(Compare("sex", "eq", "male"), "Member")
    # a bare Mongo document (no ExpTemplate around it)
    assert parse_query("expression", {"$or": [{"sex": "male"}, {"age": {"$lt": 2}}]}).node == AnyOf(
        (Compare("sex", "eq", "male"), Compare("age", "lt", 2))
    )


def test_flat_dr_ibr_form():
    node = parse_query("expression", {"personal_details.member_identifier": {"eq": "123"}}).node
    assert node == Compare("personal_details.member_identifier", "eq", "123")
    flat = {
        "member.member_identifier": {"eq": "9"},
        "programme_identifier": {"in": ["OAP", "CG"]},
        "age": {"gte": 3, "lte": 9},
    }
    assert parse_query("expression", flat).node == All(
        (
            Compare("member.member_identifier", "eq", "9"),
            Compare("programme_identifier", "in", ["OAP", "CG"]),
            All((Compare("age", "ge", 3), Compare("age", "le", 9))),
        )
    )


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        (template({"$where": "this.a > 1"}), "operator '$where'"),
        (template({"name": {"$regex": "^A"}}), "name: operator '$regex'"),
        (template({"$nor": [{"a": 1}]}), "'$nor'"),
        (template({"a": {"ne": 1}}), "operator 'ne'"),
        (template({"$and": []}), "$and must be a non-empty list"),
        (template({"$or": {"a": 1}}), "$or must be a non-empty list"),
        (template({"a": {}}), "must hold an operator"),
        (template({"$not": 5}), "$not must be a non-empty object"),
        (
            {"type": "x", "value": {"expression": "SELECT * FROM person"}},
            "free query text is never executed",
        ),
        ({"type": "x", "value": {"expression": {"query": []}}}, "non-empty object"),
        (
            {"type": "x", "value": {"expression": {"collection": 5, "query": {"a": 1}}}},
            "collection must be a string",
        ),
        ({}, "must be an object"),
        ("sex = 'male'", "must be an object"),
    ],
    ids=[
        "where",
        "regex",
        "nor",
        "flat-ne",
        "empty-and",
        "or-object",
        "empty-ops",
        "not-scalar",
        "sql-text",
        "empty-query",
        "collection-number",
        "empty",
        "text",
    ],
)
def test_expression_errors_name_the_offending_part(query: Any, mentions: str):
    assert mentions in rejected(parse_query, "expression", query)


def test_mongo_nesting_depth_is_bounded():
    document: dict[str, Any] = {"sex": "male"}
    for _ in range(14):
        document = {"$and": [document]}
    assert "levels deep" in rejected(parse_query, "expression", template(document))


def test_attributes_of_lists_every_name():
    node = parse_query("expression", template({"$or": [{"a": 1}, {"$not": {"b": 2}}]})).node
    assert attributes_of(node) == ["a", "b"]
    assert attributes_of(IdentifierIs("UIN", "1")) == ["UIN"]


# ---------------------------------------------------------------------------------------------
# Binding: attributes, aliases, record paths, values


def cond(node: Bound) -> Cond:
    assert isinstance(node, Cond), node
    return node


@pytest.mark.parametrize(
    ("profile", "entity", "name", "attribute", "owner"),
    [
        (CRVS, PERSON, "gender", "sex", "Person"),
        (CRVS, PERSON, "date_of_birth", "birth_date", "Person"),
        (CRVS, PERSON, "DOB", "birth_date", "Person"),
        (CRVS, PERSON, "last_name", "surname", "Person"),
        (CRVS, PERSON, "name.surname", "surname", "Person"),
        (SOCIAL, MEMBER, "demographic_info.person.sex", "sex", "Member"),
        (SOCIAL, MEMBER, "demographic_info.sex", "sex", "Member"),
        (SOCIAL, MEMBER, "member.demographic_info.birth_date", "birth_date", "Member"),
        (SOCIAL, GROUP, "household_size", "group_size", "Group"),
        (SOCIAL, GROUP, "pmt_score", "poverty_score", "Group"),
        (
            DR,
            DR.entity("DisabledPerson"),
            "personal_details.demographic_info.sex",
            "sex",
            "DisabledPerson",
        ),
        (
            IBR,
            IBR.entity("Beneficiary"),
            "programme_identifier.program.programme_identifier",
            "programme_identifier",
            "Beneficiary",
        ),
    ],
)
def test_attribute_aliases_and_record_paths(profile, entity, name, attribute, owner):
    value = {
        "sex": "male",
        "birth_date": "2000-01-01",
        "surname": "X",
        "group_size": "3",
        "poverty_score": "1.5",
        "programme_identifier": "OAP",
    }[attribute]
    node = cond(bind(profile, entity, Compare(name, "eq", value), TODAY))
    assert node.attribute.name == attribute
    assert node.entity == owner


def test_parent_and_child_attributes_in_the_social_registry():
    # A household with a member older than 60: the condition is on the Member entity.
    node = cond(bind(SOCIAL, GROUP, Compare("marital_status", "eq", "W"), TODAY))
    assert (node.entity, node.attribute.name, node.value) == ("Member", "marital_status", "W")
    # A member of a poor household: the condition is on the Group entity.
    node = cond(bind(SOCIAL, MEMBER, Compare("poverty_score", "lt", "2.5"), TODAY))
    assert (node.entity, node.attribute.name, node.value) == ("Group", "poverty_score", 2.5)
    # Own attributes win over the relatives' (registration_date is on both).
    assert (
        cond(bind(SOCIAL, MEMBER, Compare("registration_date", "gt", "2020-01-01"), TODAY)).entity
        == "Member"
    )
    assert (
        cond(bind(SOCIAL, GROUP, Compare("registration_date", "gt", "2020-01-01"), TODAY)).entity
        == "Group"
    )


def test_identifier_names_used_as_attributes():
    assert bind(CRVS, PERSON, Compare("UIN", "eq", 5), TODAY) == IdCond("Person", "UIN", "5")
    # an `in` over an identifier is one list, duplicates dropped
    assert bind(CRVS, PERSON, Compare("BRN", "in", "B1, B2, B1"), TODAY) == IdIn(
        "Person", "BRN", ("B1", "B2")
    )
    # any-identifier names match a value of any identifier type
    dr_person = DR.entity("DisabledPerson")
    node = bind(DR, dr_person, Compare("personal_details.member_identifier", "eq", "77"), TODAY)
    assert node == IdCond("DisabledPerson", ANY_ID, "77")
    message = rejected(bind, CRVS, PERSON, Compare("UIN", "lt", "5"), TODAY)
    assert "'UIN'" in message and "'lt'" in message


def test_unknown_attribute_message_lists_what_is_searchable():
    message = rejected(bind, SOCIAL, GROUP, Compare("shoe_size", "eq", 42), TODAY)
    assert "'shoe_size'" in message
    assert "poverty_score" in message  # own attributes
    assert "marital_status" in message  # the members' attributes
    assert "HHID" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("sex", "Female", "female"),
        ("sex", "FEMALE", "female"),
        ("sex", " male ", "male"),
        ("marital_status", "Widow", "W"),
        ("marital_status", "never married", "S"),
        ("marital_status", "w", "W"),
    ],
)
def test_code_labels_are_normalised_to_codes(name: str, value: str, expected: str):
    assert cond(bind(CRVS, PERSON, Compare(name, "eq", value), TODAY)).value == expected


def test_unknown_code_lists_the_codes():
    message = rejected(bind, CRVS, PERSON, Compare("sex", "eq", "m"), TODAY)
    assert "'m'" in message and "female (Female)" in message


@pytest.mark.parametrize("value", [["female", "Male"], "female, Male", "female,Male,"])
def test_in_takes_a_list_or_a_comma_separated_string(value: Any):
    node = cond(bind(CRVS, PERSON, Compare("sex", "in", value), TODAY))
    assert node.op == "in"
    assert node.value == ("female", "male")


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        ([], "at least one value"),
        ("", "at least one value"),
        (5, "needs a list of values"),
        (["female", "m"], "'m'"),
        ([["female"]], "must be a single"),
        (["x"] * 1001, "at most 1000"),
    ],
)
def test_in_errors(value: Any, mentions: str):
    assert mentions in rejected(bind, CRVS, PERSON, Compare("sex", "in", value), TODAY)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("birth_date", "2001-02-03", date(2001, 2, 3)),
        ("birth_date", "2001-02-03T10:00:00Z", date(2001, 2, 3)),
        ("birth_date", "03.02.2001", date(2001, 2, 3)),
        ("surname", "  Jounnesk ", "Jounnesk"),
        ("surname", 5, "5"),
    ],
)
def test_values_are_coerced_to_the_attribute_type(name: str, value: Any, expected: Any):
    assert cond(bind(CRVS, PERSON, Compare(name, "eq", value), TODAY)).value == expected


def test_numbers_are_coerced_and_bounded():
    assert cond(bind(SOCIAL, GROUP, Compare("group_size", "eq", "4"), TODAY)).value == 4
    assert cond(bind(SOCIAL, GROUP, Compare("group_size", "eq", 4.0), TODAY)).value == 4
    assert cond(bind(SOCIAL, GROUP, Compare("poverty_score", "lt", "2.5"), TODAY)).value == 2.5
    assert "'4.5'" in rejected(bind, SOCIAL, GROUP, Compare("group_size", "eq", "4.5"), TODAY)
    assert "out of range" in rejected(
        bind, SOCIAL, GROUP, Compare("group_size", "gt", "1e30"), TODAY
    )
    assert "'inf'" in rejected(bind, SOCIAL, GROUP, Compare("poverty_score", "lt", "inf"), TODAY)
    assert "'nan'" in rejected(bind, SOCIAL, GROUP, Compare("poverty_score", "lt", "nan"), TODAY)


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        (
            "birth_date",
            "yesterday",
            "'yesterday' is not a valid date (YYYY-MM-DD) for 'birth_date'",
        ),
        ("birth_date", "2001-02-30", "'2001-02-30'"),
        ("age", "old", "'old' is not a whole number of years for 'age'"),
        ("age", "2.5", "'2.5'"),
        ("age", -1, "age -1 is out of range"),
        ("surname", True, "not a valid text value"),
        ("surname", None, "must be a single"),
        ("surname", {"a": 1}, "must be a single"),
        ("surname", "a\x00b", "NUL"),
        ("is_disabled", "maybe", "'maybe'"),
    ],
)
def test_wrong_values_are_refused_naming_value_and_attribute(name: str, value: Any, mentions: str):
    profile, entity = (SOCIAL, MEMBER) if name == "is_disabled" else (CRVS, PERSON)
    assert mentions in rejected(bind, profile, entity, Compare(name, "eq", value), TODAY)


def test_booleans_only_take_eq():
    assert cond(bind(SOCIAL, MEMBER, Compare("is_disabled", "eq", "yes"), TODAY)).value is True
    assert "only 'eq'" in rejected(bind, SOCIAL, MEMBER, Compare("is_disabled", "lt", 1), TODAY)


def test_is_deceased_means_a_death_date_is_set():
    yes = cond(bind(CRVS, PERSON, Compare("is_deceased", "eq", "true"), TODAY))
    assert (yes.attribute.name, yes.op, yes.value) == ("death_date", "present", None)
    no = cond(bind(CRVS, PERSON, Compare("deceased", "eq", False), TODAY))
    assert (no.attribute.name, no.op) == ("death_date", "absent")
    assert "only 'eq'" in rejected(bind, CRVS, PERSON, Compare("is_deceased", "in", [True]), TODAY)
    assert "'perhaps'" in rejected(
        bind, CRVS, PERSON, Compare("is_deceased", "eq", "perhaps"), TODAY
    )


# ---------------------------------------------------------------------------------------------
# age -> birth_date ranges


def reference_age(birth: date, today: date) -> int:
    """Whole years; someone born on 29 February ages on 1 March in common years."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def holds(node: Bound, birth: date) -> bool:
    """Evaluate a bound age condition for a person born on `birth`."""
    if isinstance(node, BAll):
        return all(holds(p, birth) for p in node.parts)
    if isinstance(node, BAny):
        return any(holds(p, birth) for p in node.parts)
    if isinstance(node, BNot):
        return not holds(node.part, birth)
    assert isinstance(node, Cond) and node.attribute.name == "birth_date", node
    return {
        "gt": birth > node.value,
        "ge": birth >= node.value,
        "lt": birth < node.value,
        "le": birth <= node.value,
        "eq": birth == node.value,
    }[node.op]


OPS = {"eq": int.__eq__, "lt": int.__lt__, "le": int.__le__, "gt": int.__gt__, "ge": int.__ge__}
TODAYS = [
    date(2024, 2, 29),
    date(2025, 2, 28),
    date(2025, 3, 1),
    date(2026, 1, 1),
    date(2026, 12, 31),
    TODAY,
]


def births_near_boundaries(today: date) -> list[date]:
    """Every day within 3 days of each birthday boundary, plus every 29 February."""
    days = set()
    for years in range(0, 32):
        centre = shift_years(today, years)
        days.update(centre + timedelta(days=d) for d in range(-3, 4))
    days.update(
        date(y, 2, 29)
        for y in range(today.year - 32, today.year + 1)
        if y % 4 == 0 and (y % 100 or y % 400 == 0)
    )
    return sorted(d for d in days if d <= today)


@pytest.mark.parametrize("today", TODAYS, ids=str)
def test_age_rewrites_match_whole_years(today: date):
    births = births_near_boundaries(today)
    for op, check in OPS.items():
        for years in (0, 1, 2, 4, 18, 25, 30):
            node = bind(CRVS, PERSON, Compare("age", op, str(years)), today)
            for birth in births:
                expected = check(reference_age(birth, today), years)
                assert holds(node, birth) == expected, (op, years, birth, today)


@pytest.mark.parametrize("today", TODAYS, ids=str)
def test_age_in_is_any_of_the_ages(today: date):
    node = bind(CRVS, PERSON, Compare("age", "in", "0, 2,25"), today)
    for birth in births_near_boundaries(today):
        assert holds(node, birth) == (reference_age(birth, today) in (0, 2, 25)), birth


def test_birthday_today_is_that_age():
    today = date(2026, 6, 10)
    node = bind(CRVS, PERSON, Compare("age", "eq", 30), today)
    assert holds(node, date(1996, 6, 10))
    assert not holds(node, date(1996, 6, 11))
    assert holds(bind(CRVS, PERSON, Compare("age", "ge", 30), today), date(1996, 6, 10))
    assert not holds(bind(CRVS, PERSON, Compare("age", "lt", 30), today), date(1996, 6, 10))


def test_29_february():
    leapling = date(2000, 2, 29)
    eq = lambda n, today: holds(bind(CRVS, PERSON, Compare("age", "eq", n), today), leapling)  # noqa: E731
    assert eq(24, date(2025, 2, 28)) and not eq(25, date(2025, 2, 28))
    assert eq(25, date(2025, 3, 1))
    assert eq(24, date(2024, 2, 29)) and not eq(23, date(2024, 2, 29))
    assert eq(23, date(2024, 2, 28))
    assert shift_years(date(2024, 2, 29), 1) == date(2023, 2, 28)
    assert shift_years(date(2024, 2, 29), 4) == date(2020, 2, 29)


def test_age_is_index_friendly_birth_date_ranges():
    node = bind(CRVS, PERSON, Compare("age", "ge", 18), TODAY)
    assert node == Cond("Person", PERSON.attribute("birth_date"), "le", date(2008, 3, 15))
    node = bind(CRVS, PERSON, Compare("age", "lt", 18), TODAY)
    assert node == Cond("Person", PERSON.attribute("birth_date"), "gt", date(2008, 3, 15))
    # in the Social Registry a household's members' age binds to the Member entity
    node = bind(SOCIAL, GROUP, Compare("age", "gt", 60), TODAY)
    assert isinstance(node, Cond) and node.entity == "Member"


# ---------------------------------------------------------------------------------------------
# Entity, sort and pagination binding


def test_choose_entity():
    def chosen(profile, parsed, **extra):
        return choose_entity(profile, criteria(**extra), parsed).name

    uin = ParsedQuery(IdentifierIs("UIN", "1"))
    hhid = ParsedQuery(IdentifierIs("HHID", "1"))
    plain = ParsedQuery(Compare("sex", "eq", "male"))
    assert chosen(SOCIAL, uin) == "Member"
    assert chosen(SOCIAL, hhid) == "Group"
    assert chosen(SOCIAL, plain) == "Group"  # the registry's default
    assert chosen(SOCIAL, plain, response_entity="Member") == "Member"
    assert chosen(SOCIAL, plain, response_entity="spdci:Household") == "Group"
    assert chosen(SOCIAL, ParsedQuery(Compare("sex", "eq", "m"), "Member")) == "Member"
    assert chosen(SOCIAL, plain, reg_record_type="spdci-extensions-dci:SRPerson") == "Member"
    assert chosen(CRVS, plain, reg_record_type="Unknown") == "Person"
    message = rejected(choose_entity, SOCIAL, criteria(response_entity="Car"), plain)
    assert "'Car'" in message and "Group, Member" in message
    assert "collection 'Car'" in rejected(
        choose_entity, SOCIAL, criteria(), ParsedQuery(Compare("a", "eq", 1), "Car")
    )


def test_sort_binding():
    def keys(profile, entity, *sort):
        return bind_sort(
            profile,
            entity,
            criteria(sort=[{"attribute_name": n, "sort_order": o} for n, o in sort]),
        )

    birth = PERSON.attribute("birth_date")
    (key,) = keys(CRVS, PERSON, ("birth_date", "desc"))
    assert (key.entity, key.attribute, key.descending) == ("Person", birth, True)
    # age ascending = youngest last = birth_date descending
    (key,) = keys(CRVS, PERSON, ("age", "asc"))
    assert (key.attribute, key.descending) == (birth, True)
    (key,) = keys(CRVS, PERSON, ("uin", "asc"))
    assert (key.id_type, key.descending) == ("UIN", False)
    # a member sorted by its household's poverty score
    (key,) = keys(SOCIAL, MEMBER, ("pmt_score", "asc"))
    assert (key.entity, key.attribute.name) == ("Group", "poverty_score")
    assert len(keys(CRVS, PERSON, ("surname", "asc"), ("given_name", "asc"))) == 2
    # a household cannot be sorted by an attribute of its members (many values)
    message = rejected(keys, SOCIAL, GROUP, ("age", "asc"), code=SearchReason.SORT_INVALID)
    assert "sort[0].attribute_name 'age'" in message and "poverty_score" in message
    for bad in ("shoe_size", "is_deceased", "marriage_date"):
        message = rejected(
            keys, CRVS, PERSON, ("surname", "asc"), (bad, "asc"), code=SearchReason.SORT_INVALID
        )
        assert f"sort[1].attribute_name '{bad}'" in message


def test_pagination_binding():
    limits = Limits(default_page_size=50, max_page_size=200)

    def page(**pagination):
        return bind_pagination(criteria(pagination=pagination or None), limits)

    assert bind_pagination(criteria(), limits) == (50, 1)
    assert page(page_size=10) == (10, 1)
    assert page(page_size=200, page_number=7) == (200, 7)
    for bad, mentions in (
        ({"page_size": 0}, "page_size is 0"),
        ({"page_size": 201}, "page_size 201 exceeds this registry's maximum of 200"),
        ({"page_size": 5, "page_number": 0}, "page_number is 0"),
        ({"page_size": 5, "page_number": -1}, "page_number is -1"),
        ({"page_size": 5, "page_number": 2**31}, "int32"),
    ):
        assert mentions in rejected(lambda b=bad: page(**b), code=SearchReason.PAGINATION_INVALID)


def test_plan_search_ties_it_together():
    query = [
        item(1, e("sex", "eq", "Female"), "and", e("age", "ge", "60")),
        item(2, e("poverty_score", "lt", 3)),
    ]
    search = criteria(
        "predicate",
        query,
        response_entity="Member",
        sort=[{"attribute_name": "birth_date", "sort_order": "asc"}],
        pagination={"page_size": 20, "page_number": 3},
    )
    plan = plan_search(SOCIAL, search, parse_query("predicate", query), TODAY, Limits())
    assert plan.entity is MEMBER
    assert (plan.page_size, plan.page_number, plan.offset) == (20, 3, 40)
    assert plan.sort[0].attribute.name == "birth_date"
    assert isinstance(plan.node, BAll)
    first, second = plan.node.parts
    assert isinstance(first, BAll)
    sex, age = first.parts
    assert (sex.entity, sex.value) == ("Member", "female")
    assert (age.entity, age.op, age.value) == ("Member", "le", date(1966, 3, 15))
    assert (second.entity, second.attribute.name, second.value) == ("Group", "poverty_score", 3.0)


# -- work budget ----------------------------------------------------------------------------


def test_every_value_of_an_in_list_counts_as_a_term():
    query = [
        item(1, e("UIN", "in", [str(v) for v in range(900)])),
        item(2, e("age", "gt", 3), "and", e("sex", "in", "male, female")),
    ]
    node = parse_query("predicate", query).node
    # All + (in) + (All + gt + in) = 5 conditions; 900 + 2 values
    assert count_terms(node) == 5 + 900 + 2


def test_an_in_list_over_1000_values_is_refused_when_parsed():
    query = [item(1, e("UIN", "in", [str(v) for v in range(1001)]))]
    assert "at most 1000" in rejected(parse_query, "predicate", query)
    mongo = {"UIN": {"$in": [str(v) for v in range(1001)]}}
    assert "at most 1000" in rejected(parse_query, "expression", mongo)


def test_a_query_over_the_term_budget_is_refused_before_binding():
    query = [item(i, e("UIN", "in", [f"{i}-{j}" for j in range(900)])) for i in range(12)]
    parsed = parse_query("predicate", query)
    message = rejected(
        plan_search, CRVS, criteria(query=query), parsed, TODAY, Limits(max_query_terms=10_000)
    )
    assert "10813 terms" in message and "at most 10000" in message
    # within a larger budget the same query binds, as one list per condition
    plan = plan_search(CRVS, criteria(query=query), parsed, TODAY, Limits(max_query_terms=20_000))
    assert isinstance(plan.node, BAll) and all(isinstance(p, IdIn) for p in plan.node.parts)


def test_not_nested_a_thousand_deep_is_refused_not_a_recursion_error():
    spec: Any = {"$eq": "x"}
    for _ in range(1000):
        spec = {"$not": spec}
    message = rejected(parse_query, "expression", {"sex": spec})
    assert "$not more than 12 levels deep" in message
    shallow: Any = {"$eq": "x"}
    for _ in range(3):
        shallow = {"$not": shallow}
    assert isinstance(parse_query("expression", {"sex": shallow}).node, Not)


# ---------------------------------------------------------------------------------------------
# Fields a plan uses (a partner may filter and sort only on the fields it may query)


def test_a_plan_is_checked_against_the_fields_a_partner_may_query():
    from dcihub.standard.fields import FieldAccess, check_plan, covers

    assert covers(["name"], "name.given_name") and covers(["name.given_name"], "name.given_name")
    assert not covers(["name.given_name"], "name") and not covers(["nam"], "name.given_name")

    query = [
        item(1, e("sex", "eq", "Female"), "and", e("age", "ge", "60")),
        item(2, e("poverty_score", "lt", 3)),
    ]
    search = criteria(
        "predicate",
        query,
        response_entity="Member",
        sort=[{"attribute_name": "age", "sort_order": "asc"}],
    )
    plan = plan_search(SOCIAL, search, parse_query("predicate", query), TODAY, Limits())

    def check(*paths: str) -> ItemRejected | None:
        try:
            check_plan(plan, FieldAccess(SOCIAL, paths), "search_criteria")
        except ItemRejected as exc:
            return exc
        return None

    # a member's field is covered by its own path or by its path in the household record;
    # age (filter and sort) counts as birth_date
    assert check("demographic_info", "poverty_score") is None
    assert check("member_list.demographic_info.sex", "member_list", "poverty_score") is None
    missing = check("demographic_info.sex", "poverty_score")
    assert missing is not None and missing.code == SearchReason.SEARCH_CRITERIA_INVALID
    assert "'demographic_info.birth_date'" in missing.message
    hidden_parent = check("demographic_info")
    assert hidden_parent is not None and "'poverty_score' of Group" in hidden_parent.message

    by_age = criteria(
        "predicate",
        [item(1, e("sex", "eq", "Female"))],
        response_entity="Member",
        sort=[{"attribute_name": "age", "sort_order": "desc"}],
    )
    plan = plan_search(SOCIAL, by_age, parse_query("predicate", by_age.query), TODAY, Limits())
    unsorted = check("demographic_info.sex")
    assert unsorted is not None and unsorted.code == SearchReason.SORT_INVALID
    assert "sort sorts on the field 'demographic_info.birth_date'" in unsorted.message
