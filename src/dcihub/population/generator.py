"""Deterministic synthetic country: one fictional population seen by five DCI registries.

`generate_country(people, seed, as_of)` builds `people` civil-registration (CRVS) records and
derives from the same people a Social Registry (households), a Disability Registry, a Farmer
Registry and an Integrated Beneficiary Registry (five programmes). Everything is drawn from
`random.Random` instances seeded from `seed` (one stream per stage, so changing one stage does
not reshuffle the others) and dated relative to `as_of`; the clock and the global random
module are never used, so the same arguments give byte-identical data.

Demography model (all work is O(1) per person apart from bucketing, so it scales linearly):

* Births: a person's age at `as_of` (0-100) is drawn from birth-cohort weights that grew by
  1.5 %/year until 25 years ago and have fallen by 1.5 %/year since (a fertility
  transition): a pyramid with more young than old, a bulge at 20-29 and ~1.3 % births a year.
* Deaths: each person's lifetime is drawn by inverting a piecewise-constant hazard (infant
  and child mortality, then Gompertz-Makeham from age 15; men 25 % higher). The CRVS went
  digital `CRVS_DIGITAL_YEARS` before `as_of`: people who died before that are not in it, so
  a person is redrawn until alive at `as_of` or dead after digitisation. About a tenth of
  the records are deaths, concentrated at old ages, some within the last 90 days.
* Marriages: most men and women propose a first-marriage date (women from 18, mean ~23;
  men from 20, mean ~26). Proposals are bucketed by year and paired at random, man with
  woman; both get the same MRN (that is how the CRVS links spouses: it has no spouse
  field). ~12 % of couples divorce later. A spouse's earlier death
  makes the survivor widowed (W). Elderly people who found no partner in the data partly
  married "outside" the registry (spouse died before digitisation) and are widowed without
  a spouse record. Nobody marries twice.
* Parents: each person looks for a mother aged 18-44 at the birth: first among married
  couples (married before, not divorced, both alive at the birth, at most 6 children),
  sometimes (~6 %) among unmarried women. People whose parents died before digitisation have
  no parents in the data. Children take the father's surname (else the mother's) and live
  where their parents live, unless they migrated (15 %).
* Households (as the Social Registry sees them): married couples (head mostly the husband)
  with their never-married children under 18 (and two thirds of those 18-34); single
  parents; orphans with a grandparent (or, failing that, fostered by another household);
  60 % of the unpartnered people aged 70+ move in with a married child; everybody else
  lives alone. Households get an address in the head's home district, which is also the
  CRVS address of everyone living there. 55 % of the people who died in the last year are
  still listed (stale members; a quarter of those carry their death_date, the others don't)
  unless nobody alive is left in the household. Poorer households register more often;
  about 65 % of living people end up in the Social Registry.
* Disability prevalence rises with age (2 % of children to ~25 % over 75), ~6 % overall;
  farming is far more common in rural households (~20 % of adults 18-80).
* Programmes enrol eligible people with realistic gaps and lags; some beneficiaries who
  died recently are still Active (the "stop the allowance on death" case).
"""

from __future__ import annotations

import gc
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from itertools import accumulate
from typing import Any

from dcihub.population import names as N

__all__ = ["Country", "generate_country", "REGISTRIES"]

REGISTRIES = ("crvs", "social", "dr", "fr", "ibr")

YEAR = 365.2425
MAX_AGE = 100
CRVS_DIGITAL_YEARS = 14  # CRVS records start this many years before as_of
RECENT_DAYS = 90
STALE_DAYS = 365
NEVER = 10**8  # a death ordinal beyond any as_of

MALE, FEMALE, OTHER = 0, 1, 2
SEX_CODES = ("male", "female", "other")

Record = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


@cache
def _iso(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _stamp(ordinal: int, rng: random.Random) -> str:
    """An ISO 8601 UTC timestamp during office hours of the given day."""
    secs = rng.randrange(7 * 3600, 18 * 3600)
    return f"{_iso(ordinal)}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}Z"


def _stamps(first: int, last: int, rng: random.Random) -> tuple[str, str]:
    """(registration_date, last_updated) timestamps, the second never before the first."""
    registered, updated = _stamp(first, rng), _stamp(last, rng)
    return registered, max(registered, updated)


def _between(rng: random.Random, first: int, end: int) -> int:
    """A day in [first, end), or `first` when that range is empty."""
    return rng.randrange(first, end) if first < end else first


def _add_years(ordinal: int, years: int) -> int:
    """The ordinal of the anniversary `years` later (29 February -> 1 March)."""
    d = date.fromordinal(ordinal)
    try:
        return d.replace(year=d.year + years).toordinal()
    except ValueError:
        return date(d.year + years, 3, 1).toordinal()


def _age(birth: int, at: int) -> int:
    b, a = date.fromordinal(birth), date.fromordinal(at)
    return a.year - b.year - ((a.month, a.day) < (b.month, b.day))


def _luhn_digit(digits: str) -> str:
    total = 0
    for pos, ch in enumerate(reversed(digits)):
        d = int(ch)
        if pos % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _ident(kind: str, value: str) -> dict[str, str]:
    return {"identifier_type": kind, "identifier_value": value}


def _clone(obj: Any) -> Any:
    """A fast deep copy for JSON-like data (dicts, lists, scalars)."""
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


def _pick(rng: random.Random, cum: list[float]) -> int:
    """Index drawn from cumulative weights."""
    return bisect_right(cum, rng.random() * cum[-1])


def _cum(weights: list[float] | tuple[float, ...]) -> list[float]:
    return list(accumulate(weights))


# --------------------------------------------------------------------------------------------
# Geography
# --------------------------------------------------------------------------------------------

DISTRICTS: list[tuple[str, int]] = [
    (district, r) for r, region in enumerate(N.REGIONS) for district in region[4]
]
_DISTRICT_CUM = _cum([N.REGIONS[r][2] / len(N.REGIONS[r][4]) for _, r in DISTRICTS])


def _place(district: int) -> Record:
    name, region = DISTRICTS[district]
    return {"name": name, "contained_in_place": {"name": N.REGIONS[region][0]}}


def _address(district: int, rng: random.Random) -> Record:
    name, region = DISTRICTS[district]
    street = f"{rng.randrange(1, 240)} {rng.choice(N.STREET_NAMES)} {rng.choice(N.STREET_KINDS)}"
    return {
        "address_line_1": street,
        "locality": name,
        "region_code": N.REGIONS[region][1],
        "country_code": N.COUNTRY_CODE,
    }


# --------------------------------------------------------------------------------------------
# Demographic tables
# --------------------------------------------------------------------------------------------


def _cohort_weight(age: int) -> float:
    return math.exp(-0.015 * (age - 25)) if age >= 25 else math.exp(-0.015 * (25 - age))


_AGE_CUM = _cum([_cohort_weight(a) for a in range(MAX_AGE + 1)])


def _hazard(age: int) -> float:
    if age < 1:
        return 0.022
    if age < 5:
        return 0.0025
    if age < 15:
        return 0.0006
    return 0.0009 + 0.000035 * math.exp(0.092 * age)


_HAZARD = [_hazard(a) for a in range(121)]
_CUM_HAZARD = [0.0, *accumulate(_HAZARD)]
_MORTALITY = (1.25, 1.0, 1.1)  # relative hazard by sex

# Mother's age at a birth (18..44), peaking in the late twenties.
_MOTHER_AGE_CUM = _cum([math.exp(-(((a - 27) / 6.5) ** 2) / 2) for a in range(18, 45)])


def _lifetime_days(e: float) -> int:
    """Age at death (days) whose cumulative hazard equals the exponential draw `e`."""
    a = bisect_right(_CUM_HAZARD, e) - 1
    if a >= len(_HAZARD):
        return NEVER
    return int((a + (e - _CUM_HAZARD[a]) / _HAZARD[a]) * YEAR)


# --------------------------------------------------------------------------------------------
# The world: per-person attributes held in parallel lists (cheap at a million people)
# --------------------------------------------------------------------------------------------


class _World:
    def __init__(self, people: int, seed: int, as_of: date) -> None:
        self.n = people
        self.seed = seed
        self.today = as_of.toordinal()
        self.digital_since = _add_years(self.today, -CRVS_DIGITAL_YEARS)
        n = people
        self.sex = [0] * n
        self.birth = [0] * n
        self.death = [NEVER] * n
        self.spouse = [-1] * n
        self.marriage = [0] * n
        self.divorce = [0] * n
        self.mrn: list[str | None] = [None] * n
        self.mother = [-1] * n
        self.father = [-1] * n
        self.kids: list[list[int] | None] = [None] * n
        self.head_of_couple = [-1] * n
        self.home = [0] * n
        self.birthplace = [0] * n
        self.surname = [""] * n
        self.given: list[tuple[str, str | None]] = [("", None)] * n
        self.marital = ["S"] * n
        self.household = [-1] * n  # index of the household's head, for SR-visible people
        self.stale = [False] * n  # dead but still listed in the Social Registry
        self.farmer = [False] * n
        self.disability: dict[int, tuple[str, list[Record]]] = {}  # person -> (status, info)

    def rng(self, stage: str) -> random.Random:
        return random.Random(f"{self.seed}:{stage}")

    def alive(self, i: int) -> bool:
        return self.death[i] >= self.today

    def age(self, i: int) -> int:
        return _age(self.birth[i], min(self.today, self.death[i]))


def _draw_lives(w: _World) -> None:
    rng = w.rng("lives")
    today, since = w.today, w.digital_since
    for i in range(w.n):
        u = rng.random()
        sex = OTHER if u < 0.0008 else (MALE if u < 0.5094 else FEMALE)
        while True:
            age_days = int((_pick(rng, _AGE_CUM) + rng.random()) * YEAR)
            birth = today - 1 - min(age_days, int((MAX_AGE + 1) * YEAR) - 2)
            life = _lifetime_days(rng.expovariate(1.0) / _MORTALITY[sex])
            death = birth + life if life < NEVER else NEVER
            if death >= since:
                break
        w.sex[i] = sex
        w.birth[i] = birth
        w.death[i] = death if death < today else NEVER


# --------------------------------------------------------------------------------------------
# Marriages
# --------------------------------------------------------------------------------------------


def _marry(w: _World) -> None:
    rng = w.rng("marriages")
    buckets: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
    for i in range(w.n):
        sex = w.sex[i]
        if sex == OTHER or rng.random() > 0.92:
            continue
        youngest, mean_wait = (18, 5.0) if sex == FEMALE else (20, 6.0)
        wait = min(rng.expovariate(1 / mean_wait), 50.0)
        proposal = _add_years(w.birth[i], youngest) + int(wait * YEAR)
        if proposal < min(w.death[i], w.today):
            buckets.setdefault(proposal // 365, ([], []))[sex].append((i, proposal))
    counters: dict[int, int] = {}
    for key in sorted(buckets):
        men, women = buckets[key]
        rng.shuffle(men)
        for k, (woman, proposal) in enumerate(women):
            if k < len(men):
                _wed(w, rng, men[k], (woman, proposal), counters)
            else:
                _wed_outside(w, rng, woman, proposal, counters)
        for man, proposal in men[len(women) :]:
            _wed_outside(w, rng, man, proposal, counters)
    for i in range(w.n):
        w.marital[i] = _marital_status(w, i)


def _mrn(day: int, counters: dict[int, int]) -> str:
    year = date.fromordinal(day).year
    counters[year] = counters.get(year, 0) + 1
    return f"MRN-{year}-{counters[year]:06d}"


def _wed(
    w: _World,
    rng: random.Random,
    man_p: tuple[int, int],
    woman_p: tuple[int, int],
    counters: dict[int, int],
) -> None:
    (man, pm), (woman, pw) = man_p, woman_p
    day = max(pm, pw)
    end = min(w.death[man], w.death[woman], w.today)
    if day >= end:
        return
    mrn = _mrn(day, counters)
    head = woman if rng.random() < 0.1 else man
    for a, b in ((man, woman), (woman, man)):
        w.spouse[a], w.marriage[a], w.mrn[a], w.head_of_couple[a] = b, day, mrn, head
    if rng.random() < 0.12:
        split = day + int(rng.uniform(1, 25) * YEAR)
        if split < end:
            w.divorce[man] = w.divorce[woman] = split


def _wed_outside(
    w: _World, rng: random.Random, i: int, proposal: int, counters: dict[int, int]
) -> None:
    """An elderly person whose spouse died before the CRVS went digital."""
    if proposal < w.digital_since and w.age(i) >= 60 and rng.random() < 0.6:
        w.marriage[i] = proposal
        w.mrn[i] = _mrn(proposal, counters)


def _marital_status(w: _World, i: int) -> str:
    if not w.marriage[i]:
        return "S"
    if w.divorce[i]:
        return "D"
    sp = w.spouse[i]
    if sp < 0 or w.death[sp] < min(w.death[i], w.today):
        return "W"
    return "M"


# --------------------------------------------------------------------------------------------
# Parents, names, places
# --------------------------------------------------------------------------------------------


def _link_parents(w: _World) -> None:
    rng = w.rng("parents")
    couples: dict[int, list[int]] = {}  # wife's birth-year bucket -> wives
    women: dict[int, list[int]] = {}
    for i in range(w.n):
        if w.sex[i] == FEMALE:
            women.setdefault(w.birth[i] // 365, []).append(i)
            if w.spouse[i] >= 0:
                couples.setdefault(w.birth[i] // 365, []).append(i)
    for child in range(w.n):
        single = rng.random() < 0.06
        for _ in range(4):
            target = w.birth[child] - int((18 + _pick(rng, _MOTHER_AGE_CUM) + rng.random()) * YEAR)
            pool = (women if single else couples).get(target // 365)
            if pool:
                mother = pool[int(rng.random() * len(pool))]
                if _can_parent(w, mother, child, single):
                    _set_parents(w, child, mother, -1 if single else w.spouse[mother])
                    break


def _can_parent(w: _World, mother: int, child: int, single: bool) -> bool:
    b = w.birth[child]
    kids = w.kids[mother]
    if w.death[mother] <= b or (kids and len(kids) >= 6):
        return False
    married_then = (
        w.marriage[mother]
        and w.marriage[mother] <= b
        and not (w.divorce[mother] and w.divorce[mother] <= b)
    )
    if single:
        return not married_then
    return bool(married_then) and w.death[w.spouse[mother]] > b - 270


def _set_parents(w: _World, child: int, mother: int, father: int) -> None:
    w.mother[child] = mother
    w.father[child] = father
    for p in (mother, father):
        if p >= 0:
            kids = w.kids[p]
            if kids is None:
                w.kids[p] = [child]
            else:
                kids.append(child)


def _inherit(own: list, parent_of: list[int]) -> list:
    """Values passed down parent -> child: own[i] unless parent_of[i] >= 0 (then the parent's)."""
    result: list = [None] * len(own)
    for i in range(len(own)):
        chain = []
        j = i
        while result[j] is None and parent_of[j] >= 0:
            chain.append(j)
            j = parent_of[j]
        value = own[j] if result[j] is None else result[j]
        result[j] = value
        for k in chain:
            result[k] = value
    return result


def _name_people(w: _World) -> None:
    rng = w.rng("names")
    own_surname = []
    for i in range(w.n):
        sex = w.sex[i]
        if sex == OTHER:
            sex = MALE if rng.random() < 0.5 else FEMALE
        pool = N.MALE_GIVEN_NAMES if sex == MALE else N.FEMALE_GIVEN_NAMES
        second = rng.choice(pool) if rng.random() < 0.45 else None
        w.given[i] = (rng.choice(pool), second)
        own_surname.append(rng.choice(N.SURNAMES))
    lineage = [f if f >= 0 else m for f, m in zip(w.father, w.mother, strict=True)]
    w.surname = _inherit(own_surname, lineage)


def _place_people(w: _World) -> None:
    rng = w.rng("places")
    own, parent_of, born_in = [], [], []
    for i in range(w.n):
        parent = w.father[i] if w.father[i] >= 0 else w.mother[i]
        migrated = rng.random() < 0.15
        own.append(_pick(rng, _DISTRICT_CUM))
        born_in.append(_pick(rng, _DISTRICT_CUM) if migrated else -1)
        parent_of.append(-1 if migrated else parent)
    w.home = _inherit(own, parent_of)
    for i in range(w.n):
        parent = w.father[i] if w.father[i] >= 0 else w.mother[i]
        if parent >= 0:
            w.birthplace[i] = w.home[parent]  # where the family lived (lives)
        else:
            w.birthplace[i] = born_in[i] if born_in[i] >= 0 else w.home[i]


# --------------------------------------------------------------------------------------------
# Households
# --------------------------------------------------------------------------------------------


class _Household:
    __slots__ = ("head", "members", "district", "rural", "score", "hhid", "address", "registered")

    def __init__(self, head: int, district: int) -> None:
        self.head = head
        self.members = [head]
        self.district = district
        self.rural = False
        self.score = 0.0
        self.hhid: str | None = None
        self.address: Record = {}
        self.registered = 0  # day the Social Registry registered it (0: never)


def _form_households(w: _World) -> list[_Household]:
    rng = w.rng("households")
    present = [False] * w.n
    lingers, stays_home, joins_child = [False] * w.n, [False] * w.n, [False] * w.n
    for i in range(w.n):
        dead_for = w.today - w.death[i]
        present[i] = dead_for <= 0 or (dead_for <= STALE_DAYS and rng.random() < 0.55)
        lingers[i] = 0 < dead_for <= STALE_DAYS
        stays_home[i] = rng.random() < 0.65
        joins_child[i] = rng.random() < 0.6
    finder = _HeadFinder(w, present, stays_home, joins_child)
    households: dict[int, _Household] = {}
    for i in range(w.n):
        if not present[i]:
            continue
        head = finder.head(i)
        hh = households.get(head)
        if hh is None:
            hh = households[head] = _Household(head, w.home[head])
        if i != head:
            hh.members.append(i)
        w.household[i] = head
    result = []
    for hh in households.values():
        if all(lingers[m] for m in hh.members):  # nobody alive left: the SR dropped it
            for m in hh.members:
                w.household[m] = -1
            continue
        for m in hh.members:
            w.stale[m] = lingers[m]
        hh.members.sort(key=lambda m: (m != hh.head, m != w.spouse[hh.head], w.birth[m]))
        result.append(hh)
    return result


class _HeadFinder:
    """Decides whose household each SR-visible person lives in (memoised, acyclic)."""

    def __init__(
        self, w: _World, present: list[bool], stays_home: list[bool], joins_child: list[bool]
    ) -> None:
        self.w, self.present = w, present
        self.stays_home, self.joins_child = stays_home, joins_child
        self.memo: dict[int, int] = {}
        self.last = -1

    def couple_head(self, i: int) -> int:
        """The couple's head if `i` lives with a spouse, else -1."""
        w = self.w
        sp = w.spouse[i]
        if sp >= 0 and not w.divorce[i] and self.present[sp]:
            return w.head_of_couple[i]
        return -1

    def head(self, i: int) -> int:
        found = self.memo.get(i)
        if found is None:
            found = self.memo[i] = self._decide(i)
            self.last = found
        return found

    def _decide(self, i: int) -> int:
        w = self.w
        head = self.couple_head(i)
        if head >= 0:
            return head
        age = w.age(i)
        if not w.marriage[i] and (age < 18 or (age < 35 and self.stays_home[i])):
            return self._dependant(i, age)
        if age >= 70 and self.joins_child[i]:
            for kid in w.kids[i] or ():
                if self.present[kid] and self.couple_head(kid) >= 0:
                    return self.couple_head(kid)
        return i

    def _dependant(self, i: int, age: int) -> int:
        w = self.w
        mother, father = w.mother[i], w.father[i]
        elders = [mother, father]
        for p in (mother, father):
            if p >= 0:
                elders += [w.mother[p], w.father[p]]
        for p in elders:
            if p >= 0 and self.present[p]:
                return self.head(p)
        if age >= 16 or self.last < 0:
            return i
        return self.last  # fostered by the previous household


# --------------------------------------------------------------------------------------------
# The generated country
# --------------------------------------------------------------------------------------------


@dataclass
class Country:
    """One synthetic country: the same people as seen by the five DCI registries."""

    seed: int
    people: int
    as_of: date
    crvs: list[Record] = field(default_factory=list, repr=False)
    social: list[Record] = field(default_factory=list, repr=False)
    dr: list[Record] = field(default_factory=list, repr=False)
    fr: list[Record] = field(default_factory=list, repr=False)
    ibr: list[Record] = field(default_factory=list, repr=False)
    programmes: list[Record] = field(default_factory=list, repr=False)
    _samples: dict[str, Any] = field(default_factory=dict, repr=False)

    def records(self, registry: str) -> list[Record]:
        if registry not in REGISTRIES:
            raise KeyError(f"unknown registry {registry!r}; expected one of {REGISTRIES}")
        return getattr(self, registry)

    def samples(self) -> dict[str, Any]:
        """Known-to-exist identifiers per registry, as {"type", "value"[, "programme"]}."""
        return _clone(self._samples)


def generate_country(
    people: int = 10_000, seed: int = 20260101, as_of: date = date(2026, 1, 1)
) -> Country:
    """Build the synthetic country (deterministic in `people`, `seed` and `as_of`).

    The cyclic garbage collector is paused while building: the records are acyclic trees,
    and with millions of live containers its full collections would make the build
    quadratic instead of linear.
    """
    if people < 1:
        raise ValueError("people must be positive")
    collecting = gc.isenabled()
    gc.disable()
    try:
        w = _World(people, seed, as_of)
        _draw_lives(w)
        _marry(w)
        _link_parents(w)
        _name_people(w)
        _place_people(w)
        households = _form_households(w)
        builder = _Builder(w, households)
        return builder.build(Country(seed=seed, people=people, as_of=as_of))
    finally:
        if collecting:
            gc.enable()


# --------------------------------------------------------------------------------------------
# Record builders
# --------------------------------------------------------------------------------------------

_UIN_STEP = 854_435_761  # coprime with 9 * 10**8: i -> (a*i + b) mod m is a permutation
_UIN_SPAN = 900_000_000

_EMPLOYMENT_CUM = _cum([8, 25, 3, 35, 2, 20, 1, 6])  # codes "1".."8"
_OCCUPATION_CUM = _cum([1, 4, 8, 8, 8, 20, 14, 14, 8, 15])  # codes "0".."9"
_EDUCATION_CUM = _cum([2, 24, 22, 26, 7, 6, 9, 3, 1])  # codes "0".."8", adults

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


class _Builder:
    """Turns the world into DCI records, one registry at a time."""

    def __init__(self, w: _World, households: list[_Household]) -> None:
        self.w = w
        self.households = households
        b = random.Random(f"{w.seed}:uin").randrange(_UIN_SPAN)
        self.uin = []
        for i in range(w.n):
            base = str(100_000_000 + (_UIN_STEP * i + b) % _UIN_SPAN)
            self.uin.append(base + _luhn_digit(base))
        self.births = [_iso(b) for b in w.birth]
        self.hh_of: dict[int, _Household] = {}
        self.pwdn: dict[int, str] = {}
        self.frn: dict[int, str] = {}
        self.land: dict[int, float] = {}
        self.registered_on: dict[tuple[str, int], int] = {}  # (registry, person) -> day
        self.samples: dict[str, Any] = {}

    # ---- shared pieces -----------------------------------------------------------------

    def name(self, i: int) -> Record:
        given, second = self.w.given[i]
        name = {"surname": self.w.surname[i], "given_name": given}
        if second:
            name["second_name"] = second
        return name

    def person(self, i: int) -> Record:
        return {
            "identifier": [_ident("UIN", self.uin[i])],
            "name": self.name(i),
            "sex": SEX_CODES[self.w.sex[i]],
            "birth_date": self.births[i],
        }

    def uin_ref(self, i: int) -> Record:
        return {"identifier": [_ident("UIN", self.uin[i])]}

    def build(self, country: Country) -> Country:
        country.crvs = self.build_crvs()
        country.dr = self.build_dr()
        self.place_households()
        country.fr = self.build_fr()
        country.social = self.build_social()
        country.programmes = _programmes()
        country.ibr = _IbrBuilder(self, country.programmes).build()
        country._samples = self.samples
        return country

    # ---- CRVS --------------------------------------------------------------------------

    def build_crvs(self) -> list[Record]:
        w, rng = self.w, self.w.rng("crvs")
        brn_seq: dict[str, int] = {}
        drn_seq: dict[str, int] = {}
        home_addr: dict[int, Record] = {}
        records = []
        for i in range(w.n):
            year = self.births[i][:4]
            brn_seq[year] = brn_seq.get(year, 0) + 1
            ids = [_ident("UIN", self.uin[i]), _ident("BRN", f"BRN-{year}-{brn_seq[year]:06d}")]
            rec: Record = {
                "@type": "CRVSPerson",
                "@id": f"crvs:person:{i + 1:07d}",
                "identifier": ids,
                "name": self.name(i),
                "sex": SEX_CODES[w.sex[i]],
                "birth_date": self.births[i],
                "birth_place": _place(w.birthplace[i]),
            }
            events = [min(w.birth[i] + rng.randrange(1, 45), w.today - 1)]
            if not w.alive(i):
                death = w.death[i]
                dyear = _iso(death)[:4]
                drn_seq[dyear] = drn_seq.get(dyear, 0) + 1
                ids.append(_ident("DRN", f"DRN-{dyear}-{drn_seq[dyear]:06d}"))
                rec["death_date"] = _iso(death)
                rec["death_place"] = _place(w.home[i])
                events.append(min(death + rng.randrange(0, 14), w.today - 1))
            head = w.household[i]
            if head < 0:
                head = i
            if head not in home_addr:
                home_addr[head] = _address(w.home[head], rng)
            rec["address"] = [dict(home_addr[head])]
            rec["marital_status"] = w.marital[i]
            self._crvs_marriage(i, rec, ids, events)
            if w.mother[i] >= 0:
                rec["parent1_identifier"] = _ident("UIN", self.uin[w.mother[i]])
            if w.father[i] >= 0:
                rec["parent2_identifier"] = _ident("UIN", self.uin[w.father[i]])
            if w.alive(i) and w.age(i) >= 18 and rng.random() < 0.65:
                rec["phone_number"] = [f"{N.CALLING_CODE}7{rng.randrange(10**7):07d}"]
            rec["registration_date"], rec["last_updated"] = _stamps(events[0], max(events), rng)
            records.append(rec)
        self.home_addr = home_addr
        self._crvs_samples(records)
        return records

    def _crvs_marriage(self, i: int, rec: Record, ids: list, events: list[int]) -> None:
        w = self.w
        if not w.marriage[i]:
            return
        mrn = w.mrn[i]
        assert mrn is not None, "every marriage has its register number"
        ids.append(_ident("MRN", mrn))
        rec["marriage_date"] = [_iso(w.marriage[i])]
        events.append(min(w.marriage[i] + 7, w.today - 1))
        if w.divorce[i]:
            rec["divorce_date"] = [_iso(w.divorce[i])]
            events.append(min(w.divorce[i] + 30, w.today - 1))
        sp = w.spouse[i]
        if w.marital[i] == "W" and sp >= 0:
            events.append(min(w.death[sp] + 14, w.today - 1))

    def _crvs_samples(self, records: list[Record]) -> None:
        w = self.w
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
        self.samples["crvs"] = {
            "identifiers": items[:5],
            "deceased": self._uins(lambda i: recent <= w.death[i] < w.today),
            "widowed": self._uins(lambda i: w.marital[i] == "W" and w.alive(i)),
            "newborn": self._uins(lambda i: w.birth[i] >= recent),
        }

    def _uins(self, pred: Any, limit: int = 5) -> list[Record]:
        out = []
        for i in range(self.w.n):
            if pred(i):
                out.append({"type": "UIN", "value": self.uin[i]})
                if len(out) == limit:
                    break
        return out

    # ---- Disability Registry ----------------------------------------------------------

    def build_dr(self) -> list[Record]:
        w, rng = self.w, self.w.rng("dr")
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
                records.append(self._pwd(i, age, rng))
        self.samples["dr"] = {
            "identifiers": [
                item
                for i, pwdn in list(self.pwdn.items())[:1]
                for item in ({"type": "UIN", "value": self.uin[i]}, {"type": "PWDN", "value": pwdn})
            ],
            "disabled": self._uins(lambda i: self.w.disability.get(i, ("",))[0] == "0"),
            "not_disabled": self._uins(lambda i: w.alive(i) and i not in w.disability),
        }
        return records

    def _pwd(self, i: int, age: int, rng: random.Random) -> Record:
        w = self.w
        u = rng.random()
        status = "0" if u < 0.75 else "1" if u < 0.9 else "2"
        details = [self._impairment(age, rng) for _ in range(1 if rng.random() < 0.8 else 2)]
        worst = max(d["impairment_level"] for d in details)
        info = [
            {
                "disability_limitation_type": _LIMITATION[d["impairment_type"]],
                "functional_severity": _SEVERITY[d["impairment_level"]],
            }
            for d in details
        ]
        w.disability[i] = (status, info)
        self.pwdn[i] = f"PWD-{len(self.pwdn) + 1:07d}"
        reg = _between(rng, max(w.birth[i] + 30, w.digital_since), w.today)
        self.registered_on["dr", i] = reg
        member = self.member_core(i, [_ident("PWDN", self.pwdn[i])])
        member["is_disabled"] = status != "2"
        member["disability_info"] = info
        registered, updated = _stamps(reg, _between(rng, reg, w.today), rng)
        member["registration_date"] = member["last_updated"] = registered
        return {
            "@type": "DisabledPerson",
            "@id": f"dr:pwd:{self.uin[i]}",
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

    @staticmethod
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

    def member_core(
        self, i: int, extra_ids: list[Record] | None = None, rid: str | None = None
    ) -> Record:
        """The Member fields every registry shares: identifiers, person, marital status."""
        ids = [_ident("UIN", self.uin[i])] + (extra_ids or [])
        head: Record = {"@type": "Member", "@id": rid} if rid else {"@type": "Member"}
        return {
            **head,
            "member_identifier": ids,
            "demographic_info": self.person(i),
            "marital_status": self.w.marital[i],
        }

    # ---- Households (placement, poverty, registration) --------------------------------

    def place_households(self) -> None:
        w, rng = self.w, self.w.rng("poverty")
        registered = 0
        for hh in self.households:
            self.hh_of[hh.head] = hh
            region = DISTRICTS[hh.district][1]
            hh.rural = rng.random() < N.REGIONS[region][3]
            hh.address = self.home_addr[hh.head]
            kids = elders = disabled = 0
            for m in hh.members:
                age = w.age(m)
                kids += age < 15
                elders += age >= 65
                disabled += w.disability.get(m, ("2",))[0] != "2"
            adults = len(hh.members) - kids - elders
            score = (
                6.6
                + rng.gauss(0, 1.6)
                - 0.6 * kids
                - 0.35 * elders
                + 0.3 * min(adults, 3)
                - 1.3 * hh.rural
                - 0.7 * min(disabled, 1)
            )
            hh.score = round(min(10.0, max(0.0, score)), 1)
            chance = 0.9 if hh.score < 4 else 0.7 if hh.score < 6 else 0.45
            if rng.random() < chance:
                hh.registered = rng.randrange(w.digital_since + 700, w.today - 30)
                registered += 1
                hh.hhid = f"HH-{registered:07d}"

    # ---- Farmer Registry ---------------------------------------------------------------

    def build_fr(self) -> list[Record]:
        w, rng = self.w, self.w.rng("fr")
        records = []
        for i in range(w.n):
            if not w.alive(i) or not 18 <= w.age(i) <= 80:
                continue
            hh = self.hh_of[w.household[i]]
            if rng.random() < (0.36 if hh.rural else 0.045):
                w.farmer[i] = True
                records.append(self._farmer(i, hh, rng))
        self.samples["fr"] = {
            "identifiers": [
                item
                for i, frn in list(self.frn.items())[:1]
                for item in ({"type": "UIN", "value": self.uin[i]}, {"type": "FRN", "value": frn})
            ],
            "farmers": [{"type": "UIN", "value": self.uin[i]} for i in list(self.frn)[:5]],
        }
        return records

    def _farmer(self, i: int, hh: _Household, rng: random.Random) -> Record:
        w = self.w
        self.frn[i] = f"FRN-{len(self.frn) + 1:07d}"
        reg = _between(rng, max(_add_years(w.birth[i], 18), w.digital_since), w.today)
        self.registered_on["fr", i] = reg
        farms = [self._farm(hh, reg, rng) for _ in range(1 if rng.random() < 0.85 else 2)]
        land = round(sum(f["land_size"] for f in farms), 2)
        self.land[i] = land
        member = self.member_core(i, [_ident("FRN", self.frn[i])])
        member["employment_status"] = "6"
        member["occupation"] = "6"
        registered, updated = _stamps(reg, _between(rng, reg, w.today), rng)
        member["registration_date"] = member["last_updated"] = registered
        rec: Record = {
            "@type": "Farmer",
            "@id": f"fr:farmer:{self.uin[i]}",
            "farmer_personal_details": member,
        }
        if hh.registered and hh.hhid:
            rec["family_details"] = {
                "group_identifier": [_ident("HHID", hh.hhid)],
                "group_size": len(hh.members),
            }
        rec["farm_type"] = (
            "1"
            if land < 2
            else "2"
            if land < 5
            else "3"
            if land < 20
            else "4"
            if land < 100
            else "5"
        )
        rec["farm_details"] = farms
        rec["machineries_details"] = _machinery(land, rng)
        rec["registration_date"], rec["last_updated"] = registered, updated
        return rec

    def _farm(self, hh: _Household, reg: int, rng: random.Random) -> Record:
        size = round(min(max(rng.lognormvariate(0.0, 1.0), 0.05), 400.0), 2)
        crops = [_crop(rng) for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3)))]
        animals = [_animals(rng) for _ in range(rng.choice((0, 0, 0, 1, 1, 2)))]
        if not crops and not animals:
            crops.append(_crop(rng))
        activities: Record = {
            "crop_production": crops,
            "animal_production": animals,
            "mixed_farming": bool(crops and animals),
        }
        return {
            "location": _place(hh.district),
            "land_tenure": rng.choice("1111122345556"),
            "land_size": size,
            "measurment": "0",
            "farming_activities": activities,
            "registration_date": _stamp(reg, rng),
        }

    # ---- Social Registry -------------------------------------------------------------

    def build_social(self) -> list[Record]:
        rng = self.w.rng("social")
        records = []
        for hh in self.households:
            if hh.registered:
                records.append(self._group(hh, rng))
        groups = [
            {"type": "HHID", "value": r["group_identifier"][0]["identifier_value"]}
            for r in records[:5]
        ]
        members = [
            {"type": "UIN", "value": m["member_identifier"][0]["identifier_value"]}
            for r in records[:1]
            for m in r["member_list"][:1]
        ]
        self.samples["social"] = {"identifiers": members + groups[:1], "households": groups}
        return records

    def _group(self, hh: _Household, rng: random.Random) -> Record:
        w = self.w
        hhid = hh.hhid
        assert hhid is not None, "only registered households are groups"
        reg = hh.registered
        registered = _stamp(reg, rng)
        # Members born after the household registered were added later (NewHouseHoldMember).
        members = [self._sr_member(hh, m, max(reg, w.birth[m] + 20), rng) for m in hh.members]
        updated = max([registered] + [m["last_updated"] for m in members])
        return {
            "@type": "Group",
            "@id": f"social:group:{hhid[3:]}",
            "group_identifier": [_ident("HHID", hhid)],
            "group_type": "2",
            "group_size": len(members),
            "poverty_score": hh.score,
            "poverty_score_type": "PMT",
            "address": [dict(hh.address)],
            "geographical_location": _place(hh.district),
            "group_head_info": _clone(members[0]),
            "member_list": members,
            "registration_date": registered,
            "last_updated": updated,
        }

    def _sr_member(self, hh: _Household, i: int, reg: int, rng: random.Random) -> Record:
        w = self.w
        age = w.age(i)
        status, info = w.disability.get(i, ("2", []))
        m = self.member_core(i, rid=f"social:member:{self.uin[i]}")
        if w.stale[i] and rng.random() < 0.25:  # the SR heard of the death, kept the member
            m["demographic_info"]["death_date"] = _iso(w.death[i])
        m["related_person"] = self._relations(hh, i)
        m["is_disabled"] = status != "2"
        if status != "2":
            m["disability_info"] = _clone(info)
        if age >= 18:
            job = (
                "6"
                if w.farmer[i]
                else (
                    "2"
                    if age >= 65 and rng.random() < 0.8
                    else str(_pick(rng, _EMPLOYMENT_CUM) + 1)
                )
            )
            m["employment_status"] = job
            if job not in ("2", "3"):
                m["occupation"] = "6" if w.farmer[i] else str(_pick(rng, _OCCUPATION_CUM))
        m["income_level"] = "1"
        m["education_level"] = _education(age, rng)
        m["language_code"] = "eng"
        reg = min(reg, w.today - 1)
        m["registration_date"], m["last_updated"] = _stamps(reg, _between(rng, reg, w.today), rng)
        return m

    def _relations(self, hh: _Household, i: int) -> list[Record]:
        """RelatedPerson entries: the role of each household relative *to this member*."""
        w = self.w
        inside = w.household
        rel: list[Record] = []

        def add(code: str, other: int) -> None:
            rel.append({"relationship_type": code, "related_member": self.uin_ref(other)})

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


# --------------------------------------------------------------------------------------------
# Record fragments
# --------------------------------------------------------------------------------------------


def _education(age: int, rng: random.Random) -> str:
    if age < 6:
        return "0"
    if age < 12:
        return "1"
    if age < 15:
        return "2"
    if age < 18:
        return "3"
    level = _pick(rng, _EDUCATION_CUM)
    if age >= 60 and level > 1 and rng.random() < 0.5:
        level -= 1
    return str(level)


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


def _crop(rng: random.Random) -> Record:
    crop = rng.choice("1111225557734689")
    crop_rec: Record = {
        "activity_group": "012" if crop in "368" else "011",
        "crop_type_name": crop,
        "season": rng.choice(("rainy", "rainy", "dry", "year-round")),
        "end_use": rng.choice("11112"),
        "irrigation": rng.random() < 0.25,
        "fertilizer_type": sorted(set(rng.choice("13555") for _ in range(rng.randrange(3)))),
    }
    if crop_rec["irrigation"]:
        crop_rec["irrigation_water"] = [rng.choice("1122")]
    return crop_rec


def _animals(rng: random.Random) -> Record:
    kind = rng.choice("11226663")
    count = max(1, int(rng.expovariate(1 / (25 if kind == "6" else 5))))
    return {"type": kind, "count": count, "livestock_system": rng.choice("33344412")}


def _machinery(land: float, rng: random.Random) -> list[Record]:
    kit = [{"type": "10", "count": rng.randrange(2, 12)}]
    if land >= 2 or rng.random() < 0.2:
        kit.append({"type": "20", "count": rng.randrange(1, 3)})
    if land >= 10:
        kit.append({"type": "32", "count": 1 + int(land // 60)})
    return kit


# --------------------------------------------------------------------------------------------
# Integrated Beneficiary Registry
# --------------------------------------------------------------------------------------------

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


def _programmes() -> list[Record]:
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


class _IbrBuilder:
    def __init__(self, b: _Builder, programmes: list[Record]) -> None:
        self.b, self.w = b, b.w
        self.rng = b.w.rng("ibr")
        self.refs = {
            p["programme_identifier"]: {
                "programme_identifier": p["programme_identifier"],
                "programme_name": p["programme_name"],
            }
            for p in programmes
        }
        self.spec = {p[0]: p for p in _PROGRAMMES}
        self.records: list[Record] = []
        self.enrolled: dict[str, list[Record]] = {}
        self.ghosts: list[Record] = []

    def build(self) -> list[Record]:
        w = self.w
        for i in range(w.n):
            self._individual(i)
        for hh in self.b.households:
            if hh.registered:
                self._child_grant(hh)
        first = [v[0] for v in self.enrolled.values()]
        self.b.samples["ibr"] = {
            "identifiers": [{"type": "UIN", "value": f["value"]} for f in first[:1]],
            "enrolled": first,
            "deceased_enrolled": self.ghosts[:5],
        }
        return self.records

    def _individual(self, i: int) -> None:
        w, b = self.w, self.b
        if w.today - w.death[i] > 730:  # long-dead beneficiaries were archived
            return
        rng = self.rng
        if rng.random() < 0.85:
            self._enrol(i, "OAP", _add_years(w.birth[i], 65))
        if w.sex[i] == FEMALE and w.marital[i] == "W" and rng.random() < 0.7:
            sp = w.spouse[i]
            self._enrol(i, "WA", w.death[sp] if sp >= 0 else 0)
        status = w.disability.get(i, ("",))[0]
        if status == "0" and rng.random() < 0.8:
            self._enrol(i, "DG", b.registered_on["dr", i] + 30)
        elif status == "2" and rng.random() < 0.5:
            self._enrol(i, "DG", b.registered_on["dr", i] + 30, suspend=True)
        if w.farmer[i] and b.land[i] < 2 and rng.random() < 0.6:
            self._enrol(i, "FIS", b.registered_on["fr", i])

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
            changed.append(_between(rng, day, w.today))
        elif pid == "FIS" and rng.random() < 0.06:
            status = "3"
            changed.append(_between(rng, day, w.today))
        member = self.member(i)
        rec = self.beneficiary(f"ibr:{pid}:{self.b.uin[i]}", "1", member, pid, status, changed)
        self.records.append(rec)
        ref = {"type": "UIN", "value": self.b.uin[i], "programme": pid}
        self.enrolled.setdefault(pid, []).append(ref)
        if status == "1" and not w.alive(i):
            self.ghosts.append(ref)

    def member(self, i: int) -> Record:
        return {
            "@type": "Member",
            "member_identifier": [_ident("UIN", self.b.uin[i])],
            "demographic_info": self.b.person(i),
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
            "enrollment_date": _iso(changed[0]),
            "enrollment_status": status,
            "status_change_date": [_iso(d) for d in changed],
            "benefits": [
                {
                    "benefit_type": "2" if pid == "FIS" else "1",
                    "benefit_date": _iso(pay),
                    "benefit_value": f"{N.CURRENCY} {spec[5] * per}",
                    "benefit_quantity": per,
                }
            ],
        }

    def _child_grant(self, hh: _Household) -> None:
        w, rng = self.w, self.rng
        kids = [m for m in hh.members if w.alive(m) and _add_years(w.birth[m], 18) > w.today]
        if not kids or hh.score >= 5 or rng.random() > 0.8:
            return
        graduated = hh.score >= 4
        if graduated and rng.random() < 0.7:
            return
        carer = self._carer(hh, kids)
        start = max(min(w.birth[k] for k in kids), self.spec["CG"][7].toordinal(), hh.registered)
        day = start + rng.randrange(30, 400)
        if day >= w.today:
            return
        changed = [day]
        status = "3" if graduated else ("4" if rng.random() < 0.04 else "1")
        if status != "1":
            changed.append(_between(rng, day, w.today))
        rec = self.beneficiary(
            f"ibr:CG:{hh.hhid}", "2", self.member(carer), "CG", status, changed, per=len(kids)
        )
        assert hh.hhid is not None, "carers are enrolled from registered households"
        rec["group"] = {"group_identifier": [_ident("HHID", hh.hhid)]}
        self.records.append(rec)
        self.enrolled.setdefault("CG", []).append(
            {"type": "UIN", "value": self.b.uin[carer], "programme": "CG"}
        )

    def _carer(self, hh: _Household, kids: list[int]) -> int:
        w = self.w
        for k in kids:
            mother = w.mother[k]
            if mother >= 0 and w.alive(mother) and w.household[mother] == hh.head:
                return mother
        adults = [m for m in hh.members if w.alive(m) and w.age(m) >= 18]
        return hh.head if w.alive(hh.head) else (adults or kids)[0]
