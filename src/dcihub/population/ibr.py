"""Integrated Beneficiary Registry: one Beneficiary record per enrolment in a programme.

Five programmes (`programmes()`): Old Age Pension (65+), Child Grant (households with children
and a PMT score below 4.0, paid to the mother or carer), Widow Allowance, Disability Grant
(approved disability assessment) and Farmer Input Subsidy (less than 2 hectares). Programmes
enrol eligible people with realistic gaps and lags; a few enrolments are suspended, some
Child Grant households graduated when their score rose; some beneficiaries who died recently
are still Active (the "stop the allowance on death" case). Long-dead beneficiaries are
archived (not listed).
"""

from __future__ import annotations

from datetime import date

from dcihub.population import names as N
from dcihub.population.dr import Disabilities
from dcihub.population.fr import Farmers
from dcihub.population.social import Households, Surveyed
from dcihub.population.world import (
    FEMALE,
    RECENT_DAYS,
    Household,
    Record,
    World,
    add_years,
    between,
    ident,
    iso,
    requires,
)

NAME = "ibr"

_PROGRAMMES = (
    # id, name, type, functions, contribution, amount, freq, start, description
    (
        "OAP",
        "Old Age Pension",
        "3",
        ["1"],
        "3",
        60,
        "MONTHLY",
        date(2008, 7, 1),
        "Universal monthly pension for residents aged 65 and over.",
    ),
    (
        "CG",
        "Child Grant",
        "1",
        ["4"],
        "3",
        20,
        "MONTHLY",
        date(2014, 1, 1),
        "Monthly cash grant per child under 18 in households with a PMT score below 4.0.",
    ),
    (
        "WA",
        "Widow Allowance",
        "3",
        ["2"],
        "3",
        45,
        "MONTHLY",
        date(2012, 1, 1),
        "Monthly allowance for widowed women.",
    ),
    (
        "DG",
        "Disability Grant",
        "3",
        ["2"],
        "3",
        55,
        "MONTHLY",
        date(2016, 4, 1),
        "Monthly grant for people with an approved disability assessment.",
    ),
    (
        "FIS",
        "Farmer Input Subsidy",
        "4",
        ["15"],
        "3",
        120,
        "YEARLY",
        date(2018, 10, 1),
        "Yearly seed and fertiliser voucher for farmers with less than 2 hectares.",
    ),
)


def programmes() -> list[Record]:
    """The programmes the beneficiaries are enrolled in (Programme records)."""
    ministry = {
        "OAP": "Ministry of Social Welfare",
        "CG": "Ministry of Social Welfare",
        "WA": "Ministry of Social Welfare",
        "DG": "National Disability Council",
        "FIS": "Ministry of Agriculture",
    }
    out = []
    for pid, name, ptype, funcs, contrib, amount, freq, _start, desc in _PROGRAMMES:
        out.append(
            {
                "@type": "Programme",
                "@id": f"ibr:programme:{pid}",
                "programme_name": name,
                "programme_identifier": pid,
                "programme_description": desc,
                "implementing_institution": f"{ministry[pid]}, {N.COUNTRY_NAME}",
                "institution_type": "1",
                "legal_status": "1" if pid != "FIS" else "2",
                "social_protection_functions": list(funcs),
                "contribution_type": contrib,
                "programme_type": ptype,
                "benefit": [
                    {
                        "benefit_type": "2" if pid == "FIS" else "1",
                        "benefit_value": f"{N.CURRENCY} {amount}",
                    }
                ],
                "benefit_frequency": [{"freq": freq, "interval": 1}],
            }
        )
    return out


def _last_payment(before: int, yearly: bool) -> int:
    """The last scheduled payday (1st of the month, or 1 October) strictly before `before`."""
    d = date.fromordinal(before - 1)
    if yearly:
        year = d.year if d >= date(d.year, 10, 1) else d.year - 1
        return date(year, 10, 1).toordinal()
    return date(d.year, d.month, 1).toordinal()


@requires(
    "dcihub.population.dr:build",
    "dcihub.population.fr:build",
    "dcihub.population.social:survey",
)
def build(w: World) -> list[Record]:
    return _Builder(w).build()


class _Builder:
    def __init__(self, w: World) -> None:
        self.w = w
        self.rng = w.rng("ibr")
        self.disabilities = w.fact(Disabilities)
        self.farmers = w.fact(Farmers)
        self.households = w.fact(Households).of
        self.refs = {
            p["programme_identifier"]: {
                "programme_identifier": p["programme_identifier"],
                "programme_name": p["programme_name"],
            }
            for p in programmes()
        }
        self.spec = {p[0]: p for p in _PROGRAMMES}
        self.records: list[Record] = []
        self.enrolled: dict[str, list[Record]] = {}
        self.ghosts: list[Record] = []

    def build(self) -> list[Record]:
        w = self.w
        for i in range(w.n):
            self._individual(i)
        for seen in self.households.values():
            if seen.registered:
                self._child_grant(seen)
        first = [v[0] for v in self.enrolled.values()]
        w.samples[NAME] = {
            "identifiers": [{"type": "UIN", "value": f["value"]} for f in first[:1]],
            "enrolled": first,
            "deceased_enrolled": self.ghosts[:5],
        }
        return self.records

    def _individual(self, i: int) -> None:
        w, farmers = self.w, self.farmers
        if w.today - w.death[i] > 730:  # long-dead beneficiaries were archived
            return
        rng = self.rng
        if rng.random() < 0.85:
            self._enrol(i, "OAP", add_years(w.birth[i], 65))
        if w.sex[i] == FEMALE and w.marital[i] == "W" and rng.random() < 0.7:
            sp = w.spouse[i]
            self._enrol(i, "WA", w.death[sp] if sp >= 0 else 0)
        status = self.disabilities.status(i)
        if status == "0" and rng.random() < 0.8:
            self._enrol(i, "DG", self.disabilities.registered[i] + 30)
        elif status == "2" and rng.random() < 0.5:
            self._enrol(i, "DG", self.disabilities.registered[i] + 30, suspend=True)
        if i in farmers.frn and farmers.land[i] < 2 and rng.random() < 0.6:
            self._enrol(i, "FIS", farmers.registered[i])

    def _enrol(self, i: int, pid: str, eligible: int, suspend: bool = False) -> None:
        w, rng = self.w, self.rng
        spec = self.spec[pid]
        day = max(eligible, spec[7].toordinal()) + int(rng.expovariate(1 / 60))
        if day >= min(w.death[i], w.today):
            return
        status, changed = "1", [day]
        if not w.alive(i):
            dead_for = w.today - w.death[i]
            knows = rng.random() < (0.25 if dead_for <= RECENT_DAYS else 0.85)
            if knows:
                status = "2"
                changed.append(min(w.death[i] + rng.randrange(7, 60), w.today - 1))
        elif suspend or rng.random() < 0.04:
            status = "4"
            changed.append(between(rng, day, w.today))
        elif pid == "FIS" and rng.random() < 0.06:
            status = "3"
            changed.append(between(rng, day, w.today))
        member = self.member(i)
        rec = self.beneficiary(f"ibr:{pid}:{self.w.uin[i]}", "1", member, pid, status, changed)
        self.records.append(rec)
        ref = {"type": "UIN", "value": self.w.uin[i], "programme": pid}
        self.enrolled.setdefault(pid, []).append(ref)
        if status == "1" and not w.alive(i):
            self.ghosts.append(ref)

    def member(self, i: int) -> Record:
        return {
            "@type": "Member",
            "member_identifier": [ident("UIN", self.w.uin[i])],
            "demographic_info": self.w.person(i),
        }

    def beneficiary(
        self,
        rid: str,
        unit: str,
        member: Record,
        pid: str,
        status: str,
        changed: list[int],
        per: int = 1,
    ) -> Record:
        spec = self.spec[pid]
        pay_until = changed[-1] if status != "1" else self.w.today
        pay = max(_last_payment(pay_until, spec[6] == "YEARLY"), changed[0])
        return {
            "@type": "Beneficiary",
            "@id": rid,
            "assistance_unit": unit,
            "member": member,
            "programme_identifier": [dict(self.refs[pid])],
            "enrollment_date": iso(changed[0]),
            "enrollment_status": status,
            "status_change_date": [iso(d) for d in changed],
            "benefits": [
                {
                    "benefit_type": "2" if pid == "FIS" else "1",
                    "benefit_date": iso(pay),
                    "benefit_value": f"{N.CURRENCY} {spec[5] * per}",
                    "benefit_quantity": per,
                }
            ],
        }

    def _child_grant(self, seen: Surveyed) -> None:
        w, rng, hh = self.w, self.rng, seen.household
        kids = [m for m in hh.members if w.alive(m) and add_years(w.birth[m], 18) > w.today]
        if not kids or seen.score >= 5 or rng.random() > 0.8:
            return
        graduated = seen.score >= 4
        if graduated and rng.random() < 0.7:
            return
        carer = self._carer(hh, kids)
        start = max(min(w.birth[k] for k in kids), self.spec["CG"][7].toordinal(), seen.registered)
        day = start + rng.randrange(30, 400)
        if day >= w.today:
            return
        changed = [day]
        status = "3" if graduated else ("4" if rng.random() < 0.04 else "1")
        if status != "1":
            changed.append(between(rng, day, w.today))
        rec = self.beneficiary(
            f"ibr:CG:{seen.hhid}", "2", self.member(carer), "CG", status, changed, per=len(kids)
        )
        assert seen.hhid is not None, "carers are enrolled from registered households"
        rec["group"] = {"group_identifier": [ident("HHID", seen.hhid)]}
        self.records.append(rec)
        self.enrolled.setdefault("CG", []).append(
            {"type": "UIN", "value": self.w.uin[carer], "programme": "CG"}
        )

    def _carer(self, hh: Household, kids: list[int]) -> int:
        w = self.w
        for k in kids:
            mother = w.mother[k]
            if mother >= 0 and w.alive(mother) and w.household[mother] == hh.head:
                return mother
        adults = [m for m in hh.members if w.alive(m) and w.age(m) >= 18]
        return hh.head if w.alive(hh.head) else (adults or kids)[0]
