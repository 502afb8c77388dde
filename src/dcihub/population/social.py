"""Social Registry: one Group record (household) per registered household, with its members.

Two steps:

* `survey` -- the household survey: each household of the world is rural or urban (by the
  region's rural share), gets a proxy-means-test poverty score (lower with children, elderly
  and disabled members and in rural areas) and, more often when poorer, is registered in the
  Social Registry on a day of the last 12 years, with an HHID. It publishes `Households`,
  which the Farmer and Beneficiary builders read too.
* `build` -- the Group records: the household's CRVS address and district, its poverty
  score, and every member (the head first) with their relations to the others, disability
  (as the Disability Registry assessed it), employment and occupation (farmers are
  own-account workers in agriculture), education. People who died in the last year may still
  be listed (a quarter of those carry their death_date, the others don't). About 65 % of
  living people end up in the Social Registry. It publishes `Employment`.
"""

from __future__ import annotations

import random
from collections.abc import Container
from dataclasses import dataclass

from dcihub.population import names as N
from dcihub.population.crvs import Addresses
from dcihub.population.dr import Disabilities
from dcihub.population.world import (
    DISTRICTS,
    Household,
    Record,
    World,
    between,
    clone,
    cum,
    ident,
    iso,
    pick,
    place,
    requires,
    stamp,
    stamps,
)

NAME = "social"

_EMPLOYMENT_CUM = cum([8, 25, 3, 35, 2, 20, 1, 6])  # codes "1".."8"
_OCCUPATION_CUM = cum([1, 4, 8, 8, 8, 20, 14, 14, 8, 15])  # codes "0".."9"
_EDUCATION_CUM = cum([2, 24, 22, 26, 7, 6, 9, 3, 1])  # codes "0".."8", adults


class Surveyed:
    """What the household survey found about one household."""

    __slots__ = ("household", "rural", "score", "registered", "hhid", "address")

    def __init__(self, household: Household, rural: bool, address: Record) -> None:
        self.household = household
        self.rural = rural
        self.score = 0.0  # PMT poverty score, 0-10 (one decimal)
        self.registered = 0  # day the Social Registry registered it (0: never)
        self.hhid: str | None = None
        self.address = address


@dataclass(frozen=True)
class Households:
    """The survey of every household, keyed by the household's head (in world order)."""

    of: dict[int, Surveyed]


@dataclass(frozen=True)
class Employment:
    """The employment status (and occupation) the Social Registry records for each adult
    member: person -> code of `employment_status` (and of `occupation`, when employed)."""

    status: dict[int, str]
    occupation: dict[int, str]


@requires("dcihub.population.crvs:build", "dcihub.population.dr:build")
def survey(w: World) -> None:
    rng = w.rng("poverty")
    addresses = w.fact(Addresses).by_head
    disabilities = w.fact(Disabilities)
    found: dict[int, Surveyed] = {}
    registered = 0
    for hh in w.households:
        region = DISTRICTS[hh.district][1]
        seen = found[hh.head] = Surveyed(
            hh, rng.random() < N.REGIONS[region][3], addresses[hh.head]
        )
        kids = elders = disabled = 0
        for m in hh.members:
            age = w.age(m)
            kids += age < 15
            elders += age >= 65
            disabled += disabilities.status(m, "2") != "2"
        adults = len(hh.members) - kids - elders
        score = (
            6.6
            + rng.gauss(0, 1.6)
            - 0.6 * kids
            - 0.35 * elders
            + 0.3 * min(adults, 3)
            - 1.3 * seen.rural
            - 0.7 * min(disabled, 1)
        )
        seen.score = round(min(10.0, max(0.0, score)), 1)
        chance = 0.9 if seen.score < 4 else 0.7 if seen.score < 6 else 0.45
        if rng.random() < chance:
            seen.registered = rng.randrange(w.digital_since + 700, w.today - 30)
            registered += 1
            seen.hhid = f"HH-{w.serial(registered):07d}"
    w.publish(Households(found))


@requires(
    "dcihub.population.social:survey",
    "dcihub.population.dr:build",
    "dcihub.population.fr:build",
)
def build(w: World) -> list[Record]:
    from dcihub.population.fr import Farmers  # fr.py needs this module's survey: no cycle

    builder = _Builder(w, w.fact(Disabilities), w.fact(Farmers).frn.keys())
    records = []
    for seen in w.fact(Households).of.values():
        if seen.registered:
            records.append(builder.group(seen))
    w.publish(Employment(builder.status, builder.occupation))
    groups = [
        {"type": "HHID", "value": r["group_identifier"][0]["identifier_value"]} for r in records[:5]
    ]
    members = [
        {"type": "UIN", "value": m["member_identifier"][0]["identifier_value"]}
        for r in records[:1]
        for m in r["member_list"][:1]
    ]
    w.samples[NAME] = {"identifiers": members + groups[:1], "households": groups}
    return records


class _Builder:
    def __init__(self, w: World, disabilities: Disabilities, farmers: Container[int]) -> None:
        self.w = w
        self.rng = w.rng("social")
        self.disabilities = disabilities
        self.farmers = farmers  # the people in the Farmer Registry
        self.status: dict[int, str] = {}
        self.occupation: dict[int, str] = {}

    def group(self, seen: Surveyed) -> Record:
        w, rng, hh = self.w, self.rng, seen.household
        hhid = seen.hhid
        assert hhid is not None
        reg = seen.registered
        registered = stamp(reg, rng)
        # Members born after the household registered were added later (NewHouseHoldMember).
        members = [self.member(hh, m, max(reg, w.birth[m] + 20)) for m in hh.members]
        updated = max([registered] + [m["last_updated"] for m in members])
        return {
            "@type": "Group",
            "@id": f"social:group:{hhid[3:]}",
            "group_identifier": [ident("HHID", hhid)],
            "group_type": "2",
            "group_size": len(members),
            "poverty_score": seen.score,
            "poverty_score_type": "PMT",
            "address": [dict(seen.address)],
            "geographical_location": place(hh.district),
            "group_head_info": clone(members[0]),
            "member_list": members,
            "registration_date": registered,
            "last_updated": updated,
        }

    def member(self, hh: Household, i: int, reg: int) -> Record:
        w, rng = self.w, self.rng
        age = w.age(i)
        status, info = self.disabilities.info.get(i, ("2", []))
        farmer = i in self.farmers
        m = w.member_core(i, rid=f"social:member:{w.uin[i]}")
        if w.stale[i] and rng.random() < 0.25:  # the SR heard of the death, kept the member
            m["demographic_info"]["death_date"] = iso(w.death[i])
        m["related_person"] = self.relations(hh, i)
        m["is_disabled"] = status != "2"
        if status != "2":
            m["disability_info"] = clone(info)
        if age >= 18:
            job = (
                "6"
                if farmer
                else (
                    "2" if age >= 65 and rng.random() < 0.8 else str(pick(rng, _EMPLOYMENT_CUM) + 1)
                )
            )
            m["employment_status"] = self.status[i] = job
            if job not in ("2", "3"):
                m["occupation"] = self.occupation[i] = (
                    "6" if farmer else str(pick(rng, _OCCUPATION_CUM))
                )
        m["income_level"] = "1"
        m["education_level"] = _education(age, rng)
        m["language_code"] = "eng"
        reg = min(reg, w.today - 1)
        m["registration_date"], m["last_updated"] = stamps(reg, between(rng, reg, w.today), rng)
        return m

    def relations(self, hh: Household, i: int) -> list[Record]:
        """RelatedPerson entries: the role of each household relative *to this member*."""
        w = self.w
        inside = w.household
        rel: list[Record] = []

        def add(code: str, other: int) -> None:
            rel.append({"relationship_type": code, "related_member": w.uin_ref(other)})

        if i == hh.head:
            add("SELF", i)
        sp = w.spouse[i]
        if sp >= 0 and not w.divorce[i] and inside[sp] == hh.head:
            add("SPS", sp)
        for code, p in (("MTH", w.mother[i]), ("FTH", w.father[i])):
            if p >= 0 and inside[p] == hh.head:
                add(code, p)
            if p >= 0:
                for gcode, g in (("GRMTH", w.mother[p]), ("GRFTH", w.father[p])):
                    if g >= 0 and inside[g] == hh.head:
                        add(gcode, g)
        for kid in w.kids[i] or ():
            if inside[kid] == hh.head:
                add(("SON", "DAU", "CHILD")[w.sex[kid]], kid)
                for grandkid in w.kids[kid] or ():
                    if inside[grandkid] == hh.head:
                        add(("GRNDSON", "GRNDDAU", "GRNDCHILD")[w.sex[grandkid]], grandkid)
        if not rel:  # not related by blood or marriage to anyone here: the head's role
            h = hh.head
            step = any(p >= 0 and w.spouse[p] == h for p in (w.mother[i], w.father[i]))
            if step:
                code = ("STPFTH", "STPMTH", "STPPRN")[w.sex[h]]
            else:
                code = "PRNFOST" if w.age(i) < 18 else "FAMMEMB"
            add(code, h)
        return rel


def _education(age: int, rng: random.Random) -> str:
    if age < 6:
        return "0"
    if age < 12:
        return "1"
    if age < 15:
        return "2"
    if age < 18:
        return "3"
    level = pick(rng, _EDUCATION_CUM)
    if age >= 60 and level > 1 and rng.random() < 0.5:
        level -= 1
    return str(level)
