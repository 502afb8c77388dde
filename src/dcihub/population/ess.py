"""Employment Support System: a Member record per job seeker or worker the employment services
know, with their enrolments in employment-support programmes.

Who is in it: people of working age as the employment services count it, 18 to 69 (past the
pension age of 65 some keep working), who work for a wage or look for work. Farmers (the
Farmer Registry) and the people the Social Registry records as employers, own-account
workers, cooperative members or contributing family workers (employment status 5-8) are
self-employed and not in it. Where the Social Registry records an employment status, the
ESS agrees with it: not employed (2) -> registered as unemployed, employed or paid employee
(1, 4) -> registered as employed with that status, unknown (3) -> either; people the Social
Registry does not list are drawn (70 % of those registered are employed). Under 65, 55 % of
the unemployed and 35 % of the employees register; from 65, mostly workers.

* Employed: the current job (employer, job title from the occupation, employment type of the
  ESS code list -- apprenticeships only under 30 -- and a start date), and for 35 % the job
  before it, which ended (`end_date`). Employment status 1 or 4 (the Social Registry's code,
  else 4 paid employee).
* Unemployed: employment status 2, an unemployment reason of the code list (illness or
  disability far more often for people with an approved disability, retirement from 58,
  education or training and military service for the young, family responsibilities for
  women of 25-44), and the job that ended (most of them).
* Programmes (`programmes()`): the Employment and Support Allowance (unemployed after a
  dismissal, the end of a fixed-term job, or too ill to work; paid for 182 days, then
  Exited; Awaiting Renewal near the end), Vocational Training (unemployed under 41; a
  120-day course, then Exited), Public Works (unemployed in a poorer household registered in
  the Social Registry; yearly contracts, Awaiting Renewal near their end) and the
  Apprenticeship Wage Subsidy (apprentices; one year). People who found their job after a
  spell of unemployment may have an Exited allowance. A few enrolments are Suspended,
  Inactive, or Reinstated after a suspension.
* Deaths: people who died of working age in the last two years are listed if they had
  registered (70 % did: most were out of work, too ill to work, in the months before); the ESS
  knows of the death (their `death_date`), and their enrolments that had not ended are
  Deceased.

Draws come from the world's "ess" random stream only, so the other registries do not change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from dcihub.population import names as N
from dcihub.population.crvs import Addresses
from dcihub.population.dr import Disabilities
from dcihub.population.fr import Farmers
from dcihub.population.social import Employment, Households
from dcihub.population.world import (
    FEMALE,
    YEAR,
    Record,
    World,
    add_years,
    between,
    cum,
    ident,
    iso,
    pick,
    requires,
    stamps,
)

NAME = "ess"
YOUNGEST, OLDEST = 18, 69  # working age as the employment services count it
PENSION_AGE = 65
ARCHIVE_DAYS = 730  # members who died longer ago than this are no longer listed

EMPLOYED_CODES = ("1", "4")  # employment_status of an ESS member who is employed
UNEMPLOYED = "2"
SELF_EMPLOYED = ("5", "6", "7", "8")  # not in the ESS

_OCCUPATION_CUM = cum([1, 4, 8, 8, 8, 20, 14, 14, 8, 15])  # ISCO major groups "0".."9"
_TYPE_CUM = cum([45, 20, 20, 8, 7])  # employment types "1".."5"
_REASON_CUM = cum([35, 30, 10, 5, 5, 2, 2, 11])  # unemployment reasons "1".."8"

JOB_TITLES = {
    "0": ("Soldier", "Non-commissioned officer"),
    "1": ("Operations manager", "Shop manager", "Project manager"),
    "2": ("Teacher", "Nurse", "Accountant", "Civil engineer", "Software developer"),
    "3": ("Laboratory technician", "Bookkeeper", "Electrical technician", "Paramedic"),
    "4": ("Office clerk", "Data entry clerk", "Receptionist", "Cashier"),
    "5": ("Shop assistant", "Cook", "Waiter", "Security guard", "Hairdresser"),
    "6": ("Farm worker", "Gardener", "Fishery worker"),
    "7": ("Bricklayer", "Carpenter", "Tailor", "Mechanic", "Welder"),
    "8": ("Truck driver", "Machine operator", "Bus driver"),
    "9": ("Cleaner", "Labourer", "Kitchen helper", "Porter"),
}
_BUSINESS_KINDS = (
    "Trading",
    "Construction",
    "Textiles",
    "Logistics",
    "Foods",
    "Motors",
    "Hotel",
    "Printing",
    "Engineering",
    "Bakery",
    "Security Services",
    "Cleaning Services",
    "Transport",
    "Hardware",
)
_PUBLIC_EMPLOYERS = (
    "Ministry of Health",
    "Ministry of Education",
    "Ministry of Public Works",
    "National Railways",
    "National Post",
)

# id, name, programme type, functions, contribution, benefit type, amount, length in days
_PROGRAMMES = (
    ("ESA", "Employment and Support Allowance", "9", ["7", "3"], "1", "1", 40, 182),
    ("VTP", "Vocational Training Programme", "14", ["7", "6"], "3", "4", 150, 120),
    ("PWP", "Public Works Programme", "6", ["11"], "3", "5", 55, 365),
    ("AWS", "Apprenticeship Wage Subsidy", "14", ["7"], "3", "1", 30, 365),
)
_SPEC = {p[0]: p for p in _PROGRAMMES}
_DESCRIPTIONS = {
    "ESA": (
        "Monthly allowance for up to six months for people who lost their job (dismissal, end "
        "of a fixed-term contract) or cannot work because of illness."
    ),
    "VTP": "Four-month vocational courses for job seekers under 41.",
    "PWP": "Yearly public works contracts for job seekers in poorer households.",
    "AWS": "Monthly wage subsidy to the employers of apprentices, for one year.",
}


def programmes() -> list[Record]:
    """The employment-support programmes ESS members are enrolled in (Programme records)."""
    return [
        {
            "@type": "Programme",
            "@id": f"ess:programme:{pid}",
            "programme_name": name,
            "programme_identifier": pid,
            "programme_description": _DESCRIPTIONS[pid],
            "implementing_institution": f"National Employment Service, {N.COUNTRY_NAME}",
            "institution_type": "1",
            "legal_status": "1",
            "social_protection_functions": list(functions),
            "contribution_type": contribution,
            "programme_type": ptype,
            "benefit": [{"benefit_type": benefit, "benefit_value": f"{N.CURRENCY} {amount}"}],
            "benefit_frequency": [{"freq": "MONTHLY" if pid != "VTP" else "ONCE", "interval": 1}],
        }
        for pid, name, ptype, functions, contribution, benefit, amount, _days in _PROGRAMMES
    ]


@dataclass
class _Jobs:
    """Who is in the ESS: person -> ESSRN, and whether employed (True) or not (False)."""

    essrn: dict[int, str] = field(default_factory=dict)
    employed: dict[int, bool] = field(default_factory=dict)


@requires(
    "dcihub.population.crvs:build",
    "dcihub.population.dr:build",
    "dcihub.population.fr:build",
    "dcihub.population.social:build",
)
def build(w: World) -> list[Record]:
    builder = _Builder(w)
    records = [r for i in range(w.n) if (r := builder.member(i)) is not None]
    w.samples[NAME] = builder.samples()
    return records


class _Builder:
    def __init__(self, w: World) -> None:
        self.w = w
        self.rng = w.rng("ess")
        self.addresses = w.fact(Addresses).by_head
        self.disabilities = w.fact(Disabilities)
        self.farmers = w.fact(Farmers).frn
        self.employment = w.fact(Employment)
        self.households = w.fact(Households).of
        self.employers = _employers(w.rng("ess:employers"))
        self.jobs = _Jobs()
        self.enrolled: dict[str, list[Record]] = {}
        self.deceased: list[Record] = []

    # ---- who, and in which situation --------------------------------------------------

    def member(self, i: int) -> Record | None:
        w, rng = self.w, self.rng
        dead = not w.alive(i)
        if dead and w.today - w.death[i] > ARCHIVE_DAYS:
            return None
        age = w.age(i)
        if not YOUNGEST <= age <= OLDEST or i in self.farmers:
            return None
        horizon = min(w.today, w.death[i])  # the member's "now": today, or the day they died
        adult = add_years(w.birth[i], YOUNGEST)
        sr = self.employment.status.get(i)
        if sr in SELF_EMPLOYED or adult > horizon - 60:  # self-employed, or only just adult
            return None
        employed = self._situation(sr, age, dead)
        if employed is None:
            return None
        self.jobs.essrn[i] = f"ESS-{self.w.serial(len(self.jobs.essrn) + 1):07d}"
        self.jobs.employed[i] = employed
        if employed:
            status = sr if sr in EMPLOYED_CODES else "4"
            history, since, reason = self._employed(age, adult, horizon), 0, None
            reg = between(rng, max(adult, w.digital_since, history[0][0] - 365), horizon)
        else:
            status = UNEMPLOYED
            if dead and rng.random() < 0.8:  # too ill to work in the months before death
                reason, since = "4", max(adult, horizon - rng.randrange(30, 180))
            else:
                reason = self._reason(i, age)
                since = max(adult, horizon - 1 - int(rng.expovariate(1 / 300)))
            history = self._past_job(age, reason, adult, since)
            reg = min(since + rng.randrange(0, 60), horizon - 1)
        m = w.member_core(i, [ident("ESSRN", self.jobs.essrn[i])], rid=f"ess:member:{w.uin[i]}")
        head = w.household[i] if w.household[i] >= 0 else i
        m["demographic_info"]["address"] = [dict(self.addresses[head])]
        if dead:
            m["demographic_info"]["death_date"] = iso(w.death[i])
        m["employment_status"] = status
        occupation = self._occupation(i)
        if history:
            m["occupation"] = occupation
            m["employment_info"] = [
                self._job(start, end, kind, occupation) for start, end, kind in history
            ]
        if reason is not None:
            m["unemployment_reason"] = reason
        enrolments, last = self._enrolments(i, age, employed, reason, since, history, horizon)
        if enrolments:
            m["programme_enrolments"] = enrolments
        m["registration_date"], m["last_updated"] = stamps(reg, max(reg, last), rng)
        return m

    def _situation(self, sr: str | None, age: int, dead: bool) -> bool | None:
        """Employed (True), unemployed (False), or not registered with the ESS (None)."""
        rng = self.rng
        if dead:  # people who die of working age were often ill, out of work, registered
            if rng.random() >= 0.7:
                return None
            return sr in EMPLOYED_CODES
        old = age >= PENSION_AGE
        if sr == UNEMPLOYED:
            return False if rng.random() < (0.05 if old else 0.55) else None
        if sr in EMPLOYED_CODES:
            return True if rng.random() < (0.5 if old else 0.35) else None
        if sr == "3":
            if rng.random() >= 0.4:
                return None
            return rng.random() < (0.9 if old else 0.5)
        if rng.random() >= 0.25:
            return None
        return rng.random() < (0.95 if old else 0.7)

    def _employed(self, age: int, adult: int, horizon: int) -> list[tuple[int, int, str]]:
        """(start, end or 0, employment type) of the current job, and maybe the one before."""
        rng = self.rng
        start = max(adult, horizon - 1 - int(rng.expovariate(1 / (5 * YEAR))))
        jobs = [(start, 0, self._type(age))]
        if rng.random() < 0.35:
            end = start - 1 - int(rng.expovariate(1 / 120))
            if end > adult + 30:
                before = max(adult, end - 30 - int(rng.expovariate(1 / (3 * YEAR))))
                jobs.append((before, end, self._type(age)))
        return jobs

    def _past_job(
        self, age: int, reason: str, adult: int, since: int
    ) -> list[tuple[int, int, str]]:
        """The job that ended the day the member became unemployed (most have one)."""
        rng = self.rng
        if rng.random() >= (0.3 if reason == "5" else 0.85) or since - 30 <= adult:
            return []
        start = max(adult, since - 30 - int(rng.expovariate(1 / (4 * YEAR))))
        kind = rng.choice("2345") if reason == "2" else self._type(age)
        if kind == "5" and age >= 30:
            kind = "2"
        return [(start, since, kind)]

    def _type(self, age: int) -> str:
        kind = str(pick(self.rng, _TYPE_CUM) + 1)
        return "2" if kind == "5" and age >= 30 else kind

    def _reason(self, i: int, age: int) -> str:
        w, rng = self.w, self.rng
        if self.disabilities.status(i) == "0" and rng.random() < 0.6:
            return "4"
        if age >= 58 and rng.random() < 0.35:
            return "6"
        if age < 25:
            u = rng.random()
            if u < 0.25:
                return "5"
            if u < 0.3:
                return "7"
        if w.sex[i] == FEMALE and 25 <= age <= 44 and rng.random() < 0.3:
            return "3"
        return str(pick(rng, _REASON_CUM) + 1)

    def _occupation(self, i: int) -> str:
        known = self.employment.occupation.get(i)
        return known if known is not None else str(pick(self.rng, _OCCUPATION_CUM))

    def _job(self, start: int, end: int, kind: str, occupation: str) -> Record:
        job: Record = {"start_date": iso(start)}
        if end:
            job["end_date"] = iso(end)
        job["job_title"] = self.rng.choice(JOB_TITLES[occupation])
        job["employer"] = self.rng.choice(self.employers)
        job["employment_type"] = kind
        return job

    # ---- programmes -------------------------------------------------------------------

    def _enrolments(
        self,
        i: int,
        age: int,
        employed: bool,
        reason: str | None,
        since: int,
        history: list[tuple[int, int, str]],
        horizon: int,
    ) -> tuple[list[Record], int]:
        """The member's enrolments and the day of the latest status change (0: none)."""
        rng, w = self.rng, self.w
        wanted: list[tuple[str, int]] = []  # (programme, day enrolled)
        if employed:
            start, _, kind = history[0]
            if len(history) > 1 and start - history[1][1] >= 30 and rng.random() < 0.5:
                wanted.append(("ESA", history[1][1] + rng.randrange(3, 30)))
            if kind == "5" and rng.random() < 0.6:
                wanted.append(("AWS", start + rng.randrange(7, 60)))
        else:
            lag = int(rng.expovariate(1 / 20))
            if reason in ("1", "2", "4") and (history or reason == "4") and rng.random() < 0.75:
                wanted.append(("ESA", since + lag))
            if age <= 40 and reason not in ("4", "6") and rng.random() < 0.3:
                wanted.append(("VTP", since + 30 + lag))
            seen = self.households.get(w.household[i])
            if seen is not None and seen.registered and seen.score < 5 and rng.random() < 0.4:
                wanted.append(("PWP", since + 45 + lag))
        out, last = [], 0
        for pid, day in wanted:
            if day >= horizon:
                continue
            ended_by = history[0][0] if employed and pid == "ESA" else 0
            status, changed = self._status(pid, day, horizon, ended_by)
            if not w.alive(i) and status != "3":
                status = "2"
                changed.append(min(w.death[i] + rng.randrange(7, 45), w.today - 1))
            out.append(self._beneficiary(i, pid, status, changed))
            last = max(last, changed[-1])
            ref = {"type": "UIN", "value": w.uin[i], "programme": pid}
            if status == "1" and w.alive(i):
                self.enrolled.setdefault(pid, []).append(ref)
            elif status == "2":
                self.deceased.append(ref)
        return out, last

    def _status(self, pid: str, day: int, horizon: int, ended_by: int) -> tuple[str, list[int]]:
        """(enrolment status, status change days) of an enrolment on `day`."""
        rng = self.rng
        length = _SPEC[pid][7]
        end = day + length
        if ended_by:  # found a job: the allowance stopped then, or when it ran out
            return "3", [day, max(day + 1, min(end, ended_by))]
        if pid in ("ESA", "VTP", "AWS") and end < horizon:
            return "3", [day, end]
        if pid == "PWP":  # yearly contracts, renewed
            end = day + length * (1 + (horizon - day) // length)
        u = rng.random()
        if u < 0.05:
            return "4", [day, between(rng, day + 1, horizon)]
        if u < 0.09:
            return "5", [day, between(rng, day + 1, horizon)]
        if u < 0.12 and horizon - day > 60:
            suspended = between(rng, day + 1, horizon - 30)
            return "6", [day, suspended, between(rng, suspended + 1, horizon)]
        if pid != "VTP" and end - horizon <= 30 and rng.random() < 0.6:  # a course is not renewed
            return "7", [day, max(day + 1, end - 30)]
        return "1", [day]

    def _beneficiary(self, i: int, pid: str, status: str, changed: list[int]) -> Record:
        w = self.w
        _, name, ptype, _f, _c, benefit, amount, _d = _SPEC[pid]
        paid_until = w.today if status in ("1", "6", "7") else changed[-1]
        paid = max(changed[0], date.fromordinal(paid_until - 1).replace(day=1).toordinal())
        return {
            "@type": "Beneficiary",
            "@id": f"ess:{pid}:{w.uin[i]}",
            "assistance_unit": "1",
            "member": {
                "@type": "Member",
                "member_identifier": [ident("UIN", w.uin[i]), ident("ESSRN", self.jobs.essrn[i])],
                "demographic_info": self._person(i),
            },
            "programme_identifier": [
                {"programme_identifier": pid, "programme_name": name, "programme_type": ptype}
            ],
            "enrollment_date": iso(changed[0]),
            "enrollment_status": status,
            "status_change_date": [iso(d) for d in changed],
            "benefits": [
                {
                    "benefit_type": benefit,
                    "benefit_date": iso(paid),
                    "benefit_value": f"{N.CURRENCY} {amount}",
                    "benefit_quantity": 1,
                }
            ],
        }

    def _person(self, i: int) -> Record:
        person = self.w.person(i)
        if not self.w.alive(i):
            person["death_date"] = iso(self.w.death[i])
        return person

    # ---- samples ----------------------------------------------------------------------

    def samples(self) -> dict[str, list[Record]]:
        w, jobs = self.w, self.jobs
        first = next(iter(jobs.essrn.items()), None)
        identifiers = (
            [{"type": "UIN", "value": w.uin[first[0]]}, {"type": "ESSRN", "value": first[1]}]
            if first
            else []
        )
        return {
            "identifiers": identifiers,
            "employed": w.uins(lambda i: jobs.employed.get(i) is True and w.alive(i)),
            "unemployed": w.uins(lambda i: jobs.employed.get(i) is False and w.alive(i)),
            "enrolled": [v[0] for v in self.enrolled.values()],
            "deceased": self.deceased[:5],
        }


def _employers(rng: random.Random) -> tuple[str, ...]:
    """A pool of invented employers: businesses named after a family, and public bodies."""
    private = {f"{rng.choice(N.SURNAMES)} {rng.choice(_BUSINESS_KINDS)}" for _ in range(160)}
    districts = [d for region in N.REGIONS for d in region[4]]
    public = [f"{name}, {N.COUNTRY_NAME}" for name in _PUBLIC_EMPLOYERS]
    public += [f"{d} District Council" for d in districts]
    return tuple(sorted(private)) + tuple(public)
