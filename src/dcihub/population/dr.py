"""Disability Registry: a DisabledPerson record per living person with an assessed disability.

Prevalence rises with age (2 % of children to ~25 % over 75), ~6 % overall. Each record has
one or two impairments (type, level, cause, age of onset), the Washington Group functional
limitations derived from them, support received, a PWDN, and an assessment status: 75 %
approved (`0`), 15 % pending (`1`), 10 % expired (`2`, no longer counted as disabled).

Publishes `Disabilities` for the other builders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from dcihub.population.world import Record, World, between, ident, requires, stamps

NAME = "dr"

_LIMITATION = {
    "1": "VIS_SS",
    "2": "HEAR_SS",
    "3": "MOB_SS",
    "4": "COG_SS",
    "5": "COM_SS",
    "6": "COG_SS",
}
_SEVERITY = {"1": "2", "2": "3", "3": "3", "4": "4"}  # impairment level -> functional severity
_SUPPORT_LEVEL = {"1": "4", "2": "3", "3": "2", "4": "1"}  # impairment level -> status level
_ONSET_CAUSES = {
    "0": ("0", "1"),
    "1": ("2", "3", "4", "2"),
    "2": ("2", "3", "4", "5", "6", "7"),
    "3": ("8", "8", "2", "3"),
}


@dataclass
class Disabilities:
    """Who is in the Disability Registry: person -> (disability status, disability_info of a
    Member), their PWDN, and the day they were registered."""

    info: dict[int, tuple[str, list[Record]]] = field(default_factory=dict)
    pwdn: dict[int, str] = field(default_factory=dict)
    registered: dict[int, int] = field(default_factory=dict)

    def status(self, i: int, default: str = "") -> str:
        """The person's disability status code (`default` when not registered)."""
        found = self.info.get(i)
        return found[0] if found is not None else default


@requires()
def build(w: World) -> list[Record]:
    rng = w.rng("dr")
    known = Disabilities()
    records = []
    for i in range(w.n):
        if not w.alive(i):
            continue
        age = w.age(i)
        chance = (
            0.02
            if age < 18
            else 0.035
            if age < 40
            else 0.06
            if age < 60
            else (0.12 if age < 75 else 0.25)
        )
        if rng.random() < chance:
            records.append(_pwd(w, known, i, age, rng))
    w.publish(known)
    w.samples[NAME] = {
        "identifiers": [
            item
            for i, pwdn in list(known.pwdn.items())[:1]
            for item in ({"type": "UIN", "value": w.uin[i]}, {"type": "PWDN", "value": pwdn})
        ],
        "disabled": w.uins(lambda i: known.status(i) == "0"),
        "not_disabled": w.uins(lambda i: w.alive(i) and i not in known.info),
    }
    return records


def _pwd(w: World, known: Disabilities, i: int, age: int, rng: random.Random) -> Record:
    u = rng.random()
    status = "0" if u < 0.75 else "1" if u < 0.9 else "2"
    details = [_impairment(age, rng) for _ in range(1 if rng.random() < 0.8 else 2)]
    worst = max(d["impairment_level"] for d in details)
    info = [
        {
            "disability_limitation_type": _LIMITATION[d["impairment_type"]],
            "functional_severity": _SEVERITY[d["impairment_level"]],
        }
        for d in details
    ]
    known.info[i] = (status, info)
    known.pwdn[i] = f"PWD-{w.serial(len(known.pwdn) + 1):07d}"
    reg = between(rng, max(w.birth[i] + 30, w.digital_since), w.today)
    known.registered[i] = reg
    member = w.member_core(i, [ident("PWDN", known.pwdn[i])])
    member["is_disabled"] = status != "2"
    member["disability_info"] = info
    registered, updated = stamps(reg, between(rng, reg, w.today), rng)
    member["registration_date"] = member["last_updated"] = registered
    return {
        "@type": "DisabledPerson",
        "@id": f"dr:pwd:{w.uin[i]}",
        "personal_details": member,
        "disability_status": status,
        "disability_status_level": _SUPPORT_LEVEL[worst],
        "disability_details": details,
        "disability_support": [_support(details, worst, rng)],
        "transport_requirement": "0" if worst < "3" else rng.choice("0112"),
        "housing_type": "4"
        if worst == "4" and age >= 75 and rng.random() < 0.3
        else (rng.choice("1111123")),
        "registration_date": registered,
        "last_updated": updated,
    }


def _impairment(age: int, rng: random.Random) -> Record:
    kind = rng.choice("334455612" if age < 18 else "112233333466" if age >= 60 else "1233346")
    onsets = "0111" if age < 18 else "00122222" if age < 60 else "0122333"
    onset = rng.choice(onsets)
    return {
        "impairment_type": kind,
        "impairment_level": rng.choice("1112223334"),
        "impairment_cause": rng.choice(_ONSET_CAUSES[onset]),
        "age_on_set": onset,
    }


def _support(details: list[Record], worst: str, rng: random.Random) -> Record:
    kinds = {d["impairment_type"] for d in details}
    support: Record = {}
    if worst >= "3":
        kind = (
            "multiple"
            if len(kinds) > 1
            else rng.choice(("basic_activity", "mobility", "communication", "decision_making"))
        )
        support["human_assistance"] = [
            {"type": kind, "intensity": rng.choice("1223"), "support": rng.choice("011")}
        ]
    tech = [t for k, t in (("3", "1"), ("5", "2"), ("2", "3")) if k in kinds]
    if tech:
        support["assistive_technology"] = [{"type": t, "status": rng.choice("011")} for t in tech]
    if "3" in kinds and rng.random() < 0.3:
        support["housing_support"] = [{"type": "home_adaptation", "status": rng.choice("01")}]
    if rng.random() < 0.4:
        support["medical_care"] = [
            {
                "type": rng.choice(
                    ("maintenance_medicine", "specialized_habitation", "constant_healthcare")
                ),
                "status": rng.choice("011"),
            }
        ]
    if "1" in kinds and rng.random() < 0.1:
        support["animal_assistance"] = [{"type": "service_dog", "status": "1"}]
    if not support:
        support["medical_care"] = [{"type": "maintenance_medicine", "status": rng.choice("011")}]
    return support
