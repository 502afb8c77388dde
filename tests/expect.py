"""Expected answers of the DCI use cases, computed independently from the generated records.

The use-case tests ask the live server and compare what it returns with what these helpers
find by walking the plain dict records of the `country` fixture in Python -- never with
hard-coded results. Ages are whole years at the server's date (`server_today()`, the UTC date
the registry uses); "recent" windows are anchored at `reference_day(country)`, the earlier of
that date and the day the population was generated for, so that they hold events whatever the
calendar says when the tests run.

The second half holds small envelope builders for the calls `support.py` has no builder for
(txn/status, the DR and IBR special calls), in the newest spec shapes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from support import header, now_ts

Record = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Dates


def server_today() -> date:
    """The registry's notion of today (it computes `age` relative to this)."""
    return datetime.now(UTC).date()


def reference_day(country: Any) -> date:
    """Anchor of "in the last N days" windows: the generation date, unless it lies ahead."""
    return min(server_today(), country.as_of)


def day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    return date.fromisoformat(value[:10])


def age(birth: Any, today: date | None = None) -> int | None:
    born = day(birth)
    if born is None:
        return None
    today = today or server_today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# ---------------------------------------------------------------------------------------------
# Identifiers


def id_values(identifiers: Any, id_type: str) -> list[str]:
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    return [
        str(i["identifier_value"])
        for i in identifiers or []
        if isinstance(i, dict) and str(i.get("identifier_type", "")).upper() == id_type.upper()
    ]


def first_id(identifiers: Any, id_type: str = "UIN") -> str | None:
    values = id_values(identifiers, id_type)
    return values[0] if values else None


def crvs_uin(record: Record) -> str | None:
    return first_id(record.get("identifier"))


def member_uin(member: Record) -> str | None:
    return first_id(member.get("member_identifier")) or first_id(
        (member.get("demographic_info") or {}).get("identifier")
    )


def group_hhid(group: Record) -> str | None:
    return first_id(group.get("group_identifier"), "HHID")


def dr_uin(record: Record) -> str | None:
    return member_uin(record.get("personal_details") or {})


def fr_uin(record: Record) -> str | None:
    return member_uin(record.get("farmer_personal_details") or {})


def ibr_uin(record: Record) -> str | None:
    return member_uin(record.get("member") or {})


def ibr_programmes(record: Record) -> list[str]:
    return [
        p["programme_identifier"]
        for p in record.get("programme_identifier") or []
        if isinstance(p, dict) and p.get("programme_identifier")
    ]


def record_ids(records: Iterable[Record]) -> set[str]:
    return {r["@id"] for r in records}


def keys(records: Iterable[Record], key: Callable[[Record], str | None]) -> set[str]:
    """Identifiers of records, failing loudly when a record has none (or one repeats)."""
    out: set[str] = set()
    for record in records:
        value = key(record)
        assert value, f"record without the expected identifier: {record.get('@id')}"
        assert value not in out, f"identifier {value} returned twice"
        out.add(value)
    return out


# ---------------------------------------------------------------------------------------------
# CRVS


def crvs_by_uin(country: Any) -> dict[str, Record]:
    return {crvs_uin(r): r for r in country.crvs}  # type: ignore[misc]


def is_dead(record: Record) -> bool:
    return bool(record.get("death_date"))


def crvs_where(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {crvs_uin(r) for r in country.crvs if test(r)}  # type: ignore[misc]


def crvs_with_identifier(country: Any, id_type: str, value: str) -> set[str]:
    return {r["@id"] for r in country.crvs if value in id_values(r.get("identifier"), id_type)}


def crvs_old_living(country: Any, min_age: int, today: date) -> set[str]:
    return crvs_where(country, lambda r: not is_dead(r) and age(r["birth_date"], today) >= min_age)


def crvs_deaths_since(country: Any, since: date) -> set[str]:
    return crvs_where(country, lambda r: is_dead(r) and day(r["death_date"]) >= since)


def crvs_living_widows(country: Any) -> set[str]:
    return crvs_where(
        country,
        lambda r: r.get("sex") == "female" and r.get("marital_status") == "W" and not is_dead(r),
    )


def parents_of(record: Record) -> set[str]:
    return {
        v
        for key in ("parent1_identifier", "parent2_identifier")
        for v in id_values(record.get(key), "UIN")
    }


def crvs_children_of(country: Any, parent: str, max_age: int, today: date) -> set[str]:
    """Children younger than `max_age` with `parent` as first or second parent."""
    return crvs_where(
        country, lambda r: parent in parents_of(r) and age(r["birth_date"], today) < max_age
    )


def crvs_born_since(country: Any, since: date) -> set[str]:
    return crvs_where(country, lambda r: day(r["birth_date"]) >= since)


def crvs_younger_than(country: Any, years: int, today: date) -> set[str]:
    return crvs_where(country, lambda r: age(r["birth_date"], today) < years)


# ---------------------------------------------------------------------------------------------
# Social Registry


def members(group: Record) -> list[Record]:
    return [m for m in group.get("member_list") or [] if isinstance(m, dict)]


def social_groups(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {group_hhid(g) for g in country.social if test(g)}  # type: ignore[misc]


def social_members(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {
        member_uin(m)
        for g in country.social
        for m in members(g)  # type: ignore[misc]
        if test(m)
    }


def is_female_widow(member: Record) -> bool:
    return (member.get("demographic_info") or {}).get("sex") == "female" and member.get(
        "marital_status"
    ) == "W"


# ---------------------------------------------------------------------------------------------
# Disability and Farmer registries


def dr_where(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {dr_uin(r) for r in country.dr if test(r)}  # type: ignore[misc]


def impairment_types(record: Record) -> set[str]:
    return {d.get("impairment_type") for d in record.get("disability_details") or []}


def dr_age(record: Record, today: date) -> int | None:
    person = (record.get("personal_details") or {}).get("demographic_info") or {}
    return age(person.get("birth_date"), today)


def fr_where(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {fr_uin(r) for r in country.fr if test(r)}  # type: ignore[misc]


def land_size(record: Record) -> float:
    """Total land over all farms, summed in record order as the registry indexes it."""
    sizes = [f.get("land_size") for f in record.get("farm_details") or []]
    return sum(s for s in sizes if isinstance(s, int | float))


def crop_types(record: Record) -> set[str]:
    return {
        c.get("crop_type_name")
        for f in record.get("farm_details") or []
        for c in (f.get("farming_activities") or {}).get("crop_production") or []
    }


# ---------------------------------------------------------------------------------------------
# Integrated Beneficiary Registry

ENROLLED = ("1", "4")  # Active, Suspended (ibr.ENROLLED_STATUSES, restated independently)


def ibr_where(country: Any, test: Callable[[Record], bool]) -> list[Record]:
    return [r for r in country.ibr if test(r)]


def ibr_beneficiaries(country: Any, programme: str, status: str) -> list[Record]:
    return ibr_where(
        country, lambda r: programme in ibr_programmes(r) and r.get("enrollment_status") == status
    )


def ibr_enrolments_of(country: Any, uin: str) -> dict[str, str]:
    """programme -> enrolment status of one person (enrolled as a member)."""
    return {
        p: r["enrollment_status"]
        for r in country.ibr
        if ibr_uin(r) == uin
        for p in ibr_programmes(r)
    }


# ---------------------------------------------------------------------------------------------
# Employment Support System


def ess_uin(record: Record) -> str | None:
    """UIN of an ESS Member, or of the member of an ESS enrolment (Beneficiary)."""
    return member_uin(record["member"] if isinstance(record.get("member"), dict) else record)


def ess_members(country: Any, test: Callable[[Record], bool]) -> set[str]:
    return {ess_uin(m) for m in country.ess if test(m)}  # type: ignore[misc]


def ess_enrolments(country: Any) -> list[tuple[Record, Record]]:
    """(member, enrolment) for every enrolment embedded in the ESS members."""
    return [(m, e) for m in country.ess for e in m.get("programme_enrolments") or []]


# ---------------------------------------------------------------------------------------------
# Envelopes for the calls support.py has no builder for (newest spec shapes)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def txn_status_envelope(
    attribute_type: str,
    attribute_value: Any,
    txn_type: str = "search",
    transaction_id: str | None = None,
    **header_extra: Any,
) -> Record:
    return {
        "header": header("txn-status", 1, **header_extra),
        "message": {
            "transaction_id": transaction_id or new_id("ts"),
            "txnstatus_request": {
                "reference_id": new_id("tsr"),
                "txn_type": txn_type,
                "attribute_type": attribute_type,
                "attribute_value": attribute_value,
                "locale": "eng",
            },
        },
    }


def disabled_envelope(
    query: Any, query_type: str = "expression", transaction_id: str | None = None
) -> Record:
    """DR `sync/disabled`, `sync/get-disability-support`, `sync/get-disability-details`."""
    return {
        "header": header("search", 1),
        "message": {
            "transaction_id": transaction_id or new_id("dr"),
            "disabled_criteria": {"query_type": query_type, "query": query},
        },
    }


def enrolled_envelope(
    query: Any,
    query_type: str = "expression",
    response_entity: str | None = "Beneficiary",
    transaction_id: str | None = None,
) -> Record:
    """IBR `sync/enrolled`."""
    criteria: Record = {"query_type": query_type, "query": query}
    if response_entity:
        criteria["response_entity"] = response_entity
    return {
        "header": header("search", 1),
        "message": {
            "transaction_id": transaction_id or new_id("en"),
            "enrolled_criteria": criteria,
        },
    }


def callback_header(action: str, total_count: int, sender_id: str = "spmis.test") -> Record:
    """A `MsgCallbackHeader` as SP-MIS sends it on IBR `sync/enrollment/updates`."""
    return {
        "version": "1.0.0",
        "message_id": new_id("m"),
        "message_ts": now_ts(),
        "action": action,
        "status": "succ",
        "total_count": total_count,
        "completed_count": total_count,
        "sender_id": sender_id,
        "is_msg_encrypted": False,
    }


def enrollment_updates_envelope(
    beneficiaries: list[Record], transaction_id: str | None = None
) -> Record:
    return {
        "header": callback_header("notify", len(beneficiaries)),
        "message": {
            "transaction_id": transaction_id or new_id("eu"),
            "enrolled_updates": {"beneficiaries": beneficiaries},
        },
    }


def beneficiary(
    uin: str,
    programme: str,
    status: str,
    enrolled_on: str = "2026-01-02",
    sex: str = "female",
    birth_date: str = "1950-05-06",
) -> Record:
    """A Beneficiary in the newest shape (extensions/ibr), enrolled as an individual."""
    return {
        "@type": "Beneficiary",
        "assistance_unit": "1",
        "member": {
            "@type": "Member",
            "member_identifier": [{"identifier_type": "UIN", "identifier_value": uin}],
            "demographic_info": {
                "name": {"surname": "Tester", "given_name": "Una"},
                "sex": sex,
                "birth_date": birth_date,
            },
        },
        "programme_identifier": [
            {"programme_identifier": programme, "programme_name": f"Test programme {programme}"}
        ],
        "enrollment_date": enrolled_on,
        "enrollment_status": status,
    }


def send(client: Any, registry: str, path: str, envelope: Record) -> Any:
    """POST an envelope in the client's name (its sender_id in the header)."""
    envelope = {**envelope, "header": {**envelope["header"], "sender_id": client.sender_id}}
    return client.post(registry, path, envelope)


def remove_ibr_records(store: Any, record_keys: Iterable[str]) -> int:
    """Delete IBR records a test created, so the session store matches the generated data
    again (other tests compare IBR answers with it)."""
    from sqlalchemy import delete, select

    wanted = list(record_keys)
    if not wanted:
        return 0
    tables = store.records.tables("ibr", "Beneficiary")  # no embedded entities below it
    with store.begin() as conn:
        pks = (
            conn.execute(select(tables.main.c.pk).where(tables.main.c.record_key.in_(wanted)))
            .scalars()
            .all()
        )
        if pks:
            for table in (tables.ids, tables.mv, tables.main):
                conn.execute(delete(table).where(table.c.pk.in_(pks)))
    return len(pks)
