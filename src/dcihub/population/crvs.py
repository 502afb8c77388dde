"""Civil Registration and Vital Statistics: one CRVSPerson record per person of the world.

Every person ever registered since the register went digital, alive or dead: UIN and BRN
(numbered per birth year), DRN for deaths, MRN for marriages (shared by both spouses: the
register links spouses that way), parents' UINs, birth and death places, the home address
(the household's: everyone listed in a household shares it), a phone number for 65 % of
living adults, and registration / last-update stamps after the events they record.

Publishes `Addresses` (the home address of every household) for the other builders.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcihub.population import names as N
from dcihub.population.world import (
    RECENT_DAYS,
    SEX_CODES,
    Record,
    World,
    address,
    ident,
    iso,
    place,
    requires,
    stamps,
)

NAME = "crvs"


@dataclass(frozen=True)
class Addresses:
    """The CRVS home address of each household, keyed by its head (and of each person listed
    in no household, keyed by that person)."""

    by_head: dict[int, Record]


@requires()
def build(w: World) -> list[Record]:
    rng = w.rng("crvs")
    brn_seq: dict[str, int] = {}
    drn_seq: dict[str, int] = {}
    home_addr: dict[int, Record] = {}
    records = []
    for i in range(w.n):
        year = w.births[i][:4]
        brn_seq[year] = brn_seq.get(year, 0) + 1
        ids = [ident("UIN", w.uin[i]), ident("BRN", f"BRN-{year}-{w.serial(brn_seq[year]):06d}")]
        rec: Record = {
            "@type": "CRVSPerson",
            "@id": f"crvs:person:{w.serial(i + 1):07d}",
            "identifier": ids,
            "name": w.name(i),
            "sex": SEX_CODES[w.sex[i]],
            "birth_date": w.births[i],
            "birth_place": place(w.birthplace[i]),
        }
        events = [min(w.birth[i] + rng.randrange(1, 45), w.today - 1)]
        if not w.alive(i):
            death = w.death[i]
            dyear = iso(death)[:4]
            drn_seq[dyear] = drn_seq.get(dyear, 0) + 1
            ids.append(ident("DRN", f"DRN-{dyear}-{w.serial(drn_seq[dyear]):06d}"))
            rec["death_date"] = iso(death)
            rec["death_place"] = place(w.home[i])
            events.append(min(death + rng.randrange(0, 14), w.today - 1))
        head = w.household[i]
        if head < 0:
            head = i
        if head not in home_addr:
            home_addr[head] = address(w.home[head], rng)
        rec["address"] = [dict(home_addr[head])]
        rec["marital_status"] = w.marital[i]
        _marriage(w, i, rec, ids, events)
        if w.mother[i] >= 0:
            rec["parent1_identifier"] = ident("UIN", w.uin[w.mother[i]])
        if w.father[i] >= 0:
            rec["parent2_identifier"] = ident("UIN", w.uin[w.father[i]])
        if w.alive(i) and w.age(i) >= 18 and rng.random() < 0.65:
            rec["phone_number"] = [f"{N.CALLING_CODE}7{rng.randrange(10**7):07d}"]
        rec["registration_date"], rec["last_updated"] = stamps(events[0], max(events), rng)
        records.append(rec)
    w.publish(Addresses(home_addr))
    w.samples[NAME] = _samples(w, records)
    return records


def _marriage(w: World, i: int, rec: Record, ids: list, events: list[int]) -> None:
    if not w.marriage[i]:
        return
    mrn = w.mrn[i]
    assert mrn is not None, "every marriage has its register number"
    ids.append(ident("MRN", mrn))
    rec["marriage_date"] = [iso(w.marriage[i])]
    events.append(min(w.marriage[i] + 7, w.today - 1))
    if w.divorce[i]:
        rec["divorce_date"] = [iso(w.divorce[i])]
        events.append(min(w.divorce[i] + 30, w.today - 1))
    sp = w.spouse[i]
    if w.marital[i] == "W" and sp >= 0:
        events.append(min(w.death[sp] + 14, w.today - 1))


def _samples(w: World, records: list[Record]) -> dict[str, list[Record]]:
    alive = [i for i in range(min(w.n, 500)) if w.alive(i)] or [0]
    first = records[alive[0]]["identifier"]
    items = [{"type": x["identifier_type"], "value": x["identifier_value"]} for x in first]
    for kind in ("DRN", "MRN"):
        for rec in records[:2000]:
            hit = [x for x in rec["identifier"] if x["identifier_type"] == kind]
            if hit:
                items.append({"type": kind, "value": hit[0]["identifier_value"]})
                break
    recent = w.today - RECENT_DAYS
    return {
        "identifiers": items[:5],
        "deceased": w.uins(lambda i: recent <= w.death[i] < w.today),
        "widowed": w.uins(lambda i: w.marital[i] == "W" and w.alive(i)),
        "newborn": w.uins(lambda i: w.birth[i] >= recent),
    }
