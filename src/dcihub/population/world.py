"""The world of the synthetic country: its people, their lives, families and households.

`build_world(people, seed, as_of, block=, offset=)` draws everything the registries have in
common -- who was born when, who died, who married whom, parents, names, home districts,
households and UINs -- for one block of the country (a community of at most 10,000 people,
see `generator.py`), and nothing that belongs to one registry. The registry builders (one module per registry,
named by each registry profile's `builder`) turn it into records; `generator.py` runs them.

Everything is drawn from `random.Random` instances seeded from `seed` and the block (one
stream per stage: `World.rng(stage)`, so changing one stage does not reshuffle the others) and dated relative to
`as_of`; the clock and the global random module are never used, so the same arguments give
byte-identical data. All work is O(1) per person apart from bucketing, so it scales linearly.

* Births: a person's age at `as_of` (0-100) is drawn from birth-cohort weights that grew by
  1.5 %/year until 25 years ago and have fallen by 1.5 %/year since (a fertility
  transition): a pyramid with more young than old, a bulge at 20-29 and ~1.3 % births a year.
* Deaths: each person's lifetime is drawn by inverting a piecewise-constant hazard (infant
  and child mortality, then Gompertz-Makeham from age 15; men 25 % higher). Civil
  registration went digital `DIGITAL_YEARS` before `as_of`: people who died before that are
  not in the data, so a person is redrawn until alive at `as_of` or dead after digitisation.
  About a tenth of the people are dead, concentrated at old ages, some within the last 90 days.
* Marriages: most men and women propose a first-marriage date (women from 18, mean ~23;
  men from 20, mean ~26). Proposals are bucketed by year and paired at random, man with
  woman; both get the same MRN (that is how the civil register links spouses: it has no
  spouse field). ~12 % of couples divorce later. A spouse's earlier death makes the survivor
  widowed (W). Elderly people who found no partner in the data partly married "outside" it
  (spouse died before digitisation) and are widowed without a spouse record. Nobody marries
  twice.
* Parents: each person looks for a mother aged 18-44 at the birth: first among married
  couples (married before, not divorced, both alive at the birth, at most 6 children),
  sometimes (~6 %) among unmarried women. People whose parents died before digitisation have
  no parents in the data. Children take the father's surname (else the mother's) and live
  where their parents live, unless they migrated (15 %).
* Households: married couples (head mostly the husband) with their never-married children
  under 18 (and two thirds of those 18-34); single parents; orphans with a grandparent (or,
  failing that, fostered by another household); 60 % of the unpartnered people aged 70+ move
  in with a married child; everybody else lives alone. A household lives in the head's home
  district. 55 % of the people who died in the last year are still listed with their
  household (`stale`) unless nobody alive is left in it.
* UINs: ten digits (the last a Luhn check digit), a permutation of the country-wide person
  index, so no two people share one and neighbours in the data are not neighbours in number.
  Register numbers (BRN, DRN, MRN, HHID, ...) are numbered country-wide with `World.serial`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import date
from functools import cache
from itertools import accumulate
from typing import Any, TypeVar

from dcihub.population import names as N

__all__ = ["World", "Household", "Record", "build_world", "requires", "requirements"]

YEAR = 365.2425
MAX_AGE = 100
DIGITAL_YEARS = 14  # civil registration records start this many years before as_of
RECENT_DAYS = 90
STALE_DAYS = 365
NEVER = 10**8  # a death ordinal beyond any as_of

MALE, FEMALE, OTHER = 0, 1, 2
SEX_CODES = ("male", "female", "other")

Record = dict[str, Any]
T = TypeVar("T")
Step = Callable[["World"], Any]
S = TypeVar("S", bound=Step)


def requires(*steps: str) -> Callable[[S], S]:
    """Declare the steps a builder needs to have run on the world before it runs.

    Each step is named like a profile's `builder`, as "package.module:function" (a string, so
    that two builder modules may need each other's steps without importing each other): the
    builder of another registry, or a step that only publishes facts. `generator.py` runs
    every step once, each after the steps it requires.
    """

    def mark(step: S) -> S:
        step.requires = steps  # type: ignore[attr-defined]
        return step

    return mark


def requirements(step: Step) -> tuple[str, ...]:
    """The steps `step` declared with `@requires` (none if it did not)."""
    return tuple(getattr(step, "requires", ()))


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


@cache
def iso(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def stamp(ordinal: int, rng: random.Random) -> str:
    """An ISO 8601 UTC timestamp during office hours of the given day."""
    secs = rng.randrange(7 * 3600, 18 * 3600)
    return f"{iso(ordinal)}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}Z"


def stamps(first: int, last: int, rng: random.Random) -> tuple[str, str]:
    """(registration_date, last_updated) timestamps, the second never before the first."""
    registered, updated = stamp(first, rng), stamp(last, rng)
    return registered, max(registered, updated)


def between(rng: random.Random, first: int, end: int) -> int:
    """A day in [first, end), or `first` when that range is empty."""
    return rng.randrange(first, end) if first < end else first


def add_years(ordinal: int, years: int) -> int:
    """The ordinal of the anniversary `years` later (29 February -> 1 March)."""
    d = date.fromordinal(ordinal)
    try:
        return d.replace(year=d.year + years).toordinal()
    except ValueError:
        return date(d.year + years, 3, 1).toordinal()


def whole_years(birth: int, at: int) -> int:
    b, a = date.fromordinal(birth), date.fromordinal(at)
    return a.year - b.year - ((a.month, a.day) < (b.month, b.day))


def luhn_digit(digits: str) -> str:
    total = 0
    for pos, ch in enumerate(reversed(digits)):
        d = int(ch)
        if pos % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def ident(kind: str, value: str) -> dict[str, str]:
    return {"identifier_type": kind, "identifier_value": value}


def clone(obj: Any) -> Any:
    """A fast deep copy for JSON-like data (dicts, lists, scalars)."""
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    return obj


def pick(rng: random.Random, cum: list[float]) -> int:
    """Index drawn from cumulative weights."""
    return bisect_right(cum, rng.random() * cum[-1])


def cum(weights: list[float] | tuple[float, ...]) -> list[float]:
    return list(accumulate(weights))


# --------------------------------------------------------------------------------------------
# Geography
# --------------------------------------------------------------------------------------------

DISTRICTS: list[tuple[str, int]] = [
    (district, r) for r, region in enumerate(N.REGIONS) for district in region[4]
]
_DISTRICT_CUM = cum([N.REGIONS[r][2] / len(N.REGIONS[r][4]) for _, r in DISTRICTS])


def place(district: int) -> Record:
    name, region = DISTRICTS[district]
    return {"name": name, "contained_in_place": {"name": N.REGIONS[region][0]}}


def address(district: int, rng: random.Random) -> Record:
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


_AGE_CUM = cum([_cohort_weight(a) for a in range(MAX_AGE + 1)])


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
_MOTHER_AGE_CUM = cum([math.exp(-(((a - 27) / 6.5) ** 2) / 2) for a in range(18, 45)])


def _lifetime_days(e: float) -> int:
    """Age at death (days) whose cumulative hazard equals the exponential draw `e`."""
    a = bisect_right(_CUM_HAZARD, e) - 1
    if a >= len(_HAZARD):
        return NEVER
    return int((a + (e - _CUM_HAZARD[a]) / _HAZARD[a]) * YEAR)


# --------------------------------------------------------------------------------------------
# The world: per-person attributes held in parallel lists (cheap at a million people)
# --------------------------------------------------------------------------------------------


class World:
    """The people of the country and what every registry sees of them.

    Built by `build_world` (lives, marriages, parents, names, places, households, UINs); the
    registry builders then read it, record their demo samples in `samples` (registry -> dict)
    and `publish` what other builders need from them (a fact is any object, found again by its
    class with `fact`).
    """

    def __init__(
        self, people: int, seed: int, as_of: date, *, block: int = 0, offset: int = 0
    ) -> None:
        self.n = people
        self.seed = seed
        self.block = block  # which block of the country this world is (0: the first)
        self.offset = offset  # the country-wide index of this block's first person
        self.today = as_of.toordinal()
        self.digital_since = add_years(self.today, -DIGITAL_YEARS)
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
        self.household = [-1] * n  # the head of the household a person is listed in, or -1
        self.stale = [False] * n  # dead, but still listed with a household
        self.households: list[Household] = []
        self.household_of: dict[int, Household] = {}  # head -> household
        self.uin = [""] * n
        self.births = [""] * n  # birth dates, ISO 8601
        self.samples: dict[str, Any] = {}  # registry -> its demo samples
        self._facts: dict[type, object] = {}

    def rng(self, stage: str) -> random.Random:
        """The random stream of one stage of this block (block 0 keeps the stream names of a
        one-block country, so a small country is the first block of a larger one)."""
        if self.block:
            return random.Random(f"{self.seed}:{stage}:{self.block}")
        return random.Random(f"{self.seed}:{stage}")

    def serial(self, n: int) -> int:
        """The country-wide serial number of the `n`-th thing (from 1) this block numbers in
        one series (a register number, an HHID): blocks never number more things of a series
        than they have people, so `offset + n` is unique across blocks."""
        return self.offset + n

    def alive(self, i: int) -> bool:
        return self.death[i] >= self.today

    def age(self, i: int) -> int:
        return whole_years(self.birth[i], min(self.today, self.death[i]))

    # ---- what builders share ---------------------------------------------------------------

    def publish(self, fact: object) -> None:
        """Make `fact` available to later builders (one fact per class)."""
        self._facts[type(fact)] = fact

    def fact(self, kind: type[T]) -> T:
        """The fact of class `kind` an earlier builder published."""
        found = self._facts.get(kind)
        if found is None:
            raise LookupError(
                f"no {kind.__name__} has been published yet: the builder that needs it must "
                "list the builder that publishes it in @requires(...)"
            )
        return found  # type: ignore[return-value]

    # ---- record fragments every registry uses --------------------------------------------

    def name(self, i: int) -> Record:
        given, second = self.given[i]
        name = {"surname": self.surname[i], "given_name": given}
        if second:
            name["second_name"] = second
        return name

    def person(self, i: int) -> Record:
        return {
            "identifier": [ident("UIN", self.uin[i])],
            "name": self.name(i),
            "sex": SEX_CODES[self.sex[i]],
            "birth_date": self.births[i],
        }

    def uin_ref(self, i: int) -> Record:
        return {"identifier": [ident("UIN", self.uin[i])]}

    def member_core(
        self, i: int, extra_ids: list[Record] | None = None, rid: str | None = None
    ) -> Record:
        """The Member fields every registry shares: identifiers, person, marital status."""
        ids = [ident("UIN", self.uin[i])] + (extra_ids or [])
        head: Record = {"@type": "Member", "@id": rid} if rid else {"@type": "Member"}
        return {
            **head,
            "member_identifier": ids,
            "demographic_info": self.person(i),
            "marital_status": self.marital[i],
        }

    def uins(self, pred: Callable[[int], bool], limit: int = 5) -> list[Record]:
        """Up to `limit` sample identifiers `{"type": "UIN", "value"}` of people matching `pred`."""
        out = []
        for i in range(self.n):
            if pred(i):
                out.append({"type": "UIN", "value": self.uin[i]})
                if len(out) == limit:
                    break
        return out


def _draw_lives(w: World) -> None:
    rng = w.rng("lives")
    today, since = w.today, w.digital_since
    for i in range(w.n):
        u = rng.random()
        sex = OTHER if u < 0.0008 else (MALE if u < 0.5094 else FEMALE)
        while True:
            age_days = int((pick(rng, _AGE_CUM) + rng.random()) * YEAR)
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


def _marry(w: World) -> None:
    rng = w.rng("marriages")
    buckets: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
    for i in range(w.n):
        sex = w.sex[i]
        if sex == OTHER or rng.random() > 0.92:
            continue
        youngest, mean_wait = (18, 5.0) if sex == FEMALE else (20, 6.0)
        wait = min(rng.expovariate(1 / mean_wait), 50.0)
        proposal = add_years(w.birth[i], youngest) + int(wait * YEAR)
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


def _mrn(w: World, day: int, counters: dict[int, int]) -> str:
    year = date.fromordinal(day).year
    counters[year] = counters.get(year, 0) + 1
    return f"MRN-{year}-{w.serial(counters[year]):06d}"


def _wed(
    w: World,
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
    mrn = _mrn(w, day, counters)
    head = woman if rng.random() < 0.1 else man
    for a, b in ((man, woman), (woman, man)):
        w.spouse[a], w.marriage[a], w.mrn[a], w.head_of_couple[a] = b, day, mrn, head
    if rng.random() < 0.12:
        split = day + int(rng.uniform(1, 25) * YEAR)
        if split < end:
            w.divorce[man] = w.divorce[woman] = split


def _wed_outside(
    w: World, rng: random.Random, i: int, proposal: int, counters: dict[int, int]
) -> None:
    """An elderly person whose spouse died before the records went digital."""
    if proposal < w.digital_since and w.age(i) >= 60 and rng.random() < 0.6:
        w.marriage[i] = proposal
        w.mrn[i] = _mrn(w, proposal, counters)


def _marital_status(w: World, i: int) -> str:
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


def _link_parents(w: World) -> None:
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
            target = w.birth[child] - int((18 + pick(rng, _MOTHER_AGE_CUM) + rng.random()) * YEAR)
            pool = (women if single else couples).get(target // 365)
            if pool:
                mother = pool[int(rng.random() * len(pool))]
                if _can_parent(w, mother, child, single):
                    _set_parents(w, child, mother, -1 if single else w.spouse[mother])
                    break


def _can_parent(w: World, mother: int, child: int, single: bool) -> bool:
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


def _set_parents(w: World, child: int, mother: int, father: int) -> None:
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


def _name_people(w: World) -> None:
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


def _place_people(w: World) -> None:
    rng = w.rng("places")
    own, parent_of, born_in = [], [], []
    for i in range(w.n):
        parent = w.father[i] if w.father[i] >= 0 else w.mother[i]
        migrated = rng.random() < 0.15
        own.append(pick(rng, _DISTRICT_CUM))
        born_in.append(pick(rng, _DISTRICT_CUM) if migrated else -1)
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


class Household:
    """People living together: the head first, then the head's spouse, then by age."""

    __slots__ = ("head", "members", "district")

    def __init__(self, head: int, district: int) -> None:
        self.head = head
        self.members = [head]
        self.district = district


def _form_households(w: World) -> list[Household]:
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
    households: dict[int, Household] = {}
    for i in range(w.n):
        if not present[i]:
            continue
        head = finder.head(i)
        hh = households.get(head)
        if hh is None:
            hh = households[head] = Household(head, w.home[head])
        if i != head:
            hh.members.append(i)
        w.household[i] = head
    result = []
    for hh in households.values():
        if all(lingers[m] for m in hh.members):  # nobody alive left: the household is gone
            for m in hh.members:
                w.household[m] = -1
            continue
        for m in hh.members:
            w.stale[m] = lingers[m]
        hh.members.sort(key=lambda m: (m != hh.head, m != w.spouse[hh.head], w.birth[m]))
        result.append(hh)
    return result


class _HeadFinder:
    """Decides whose household each listed person lives in (memoised, acyclic)."""

    def __init__(
        self, w: World, present: list[bool], stays_home: list[bool], joins_child: list[bool]
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
# Building the world
# --------------------------------------------------------------------------------------------

_UIN_STEP = 854_435_761  # coprime with 9 * 10**8: i -> (a*i + b) mod m is a permutation
_UIN_SPAN = 900_000_000


def build_world(people: int, seed: int, as_of: date, *, block: int = 0, offset: int = 0) -> World:
    """Draw the people of one block of the country (deterministic in `people`, `seed`,
    `as_of`, `block` and `offset`; a one-block country is `block=0, offset=0`)."""
    if people < 1:
        raise ValueError("people must be positive")
    w = World(people, seed, as_of, block=block, offset=offset)
    _draw_lives(w)
    _marry(w)
    _link_parents(w)
    _name_people(w)
    _place_people(w)
    w.households = _form_households(w)
    w.household_of = {hh.head: hh for hh in w.households}
    b = random.Random(f"{seed}:uin").randrange(_UIN_SPAN)
    for i in range(people):
        base = str(100_000_000 + (_UIN_STEP * (offset + i) + b) % _UIN_SPAN)
        w.uin[i] = base + luhn_digit(base)
    w.births = [iso(day) for day in w.birth]
    return w


def district_code(district: int) -> str:
    """The stable code of a district (by index in `DISTRICTS`): its region's ISO 3166-2 style
    code and its number in the region, e.g. `XX-AL-01` for the region's first district."""
    name, region = DISTRICTS[district]
    return f"{N.REGIONS[region][1]}-{N.REGIONS[region][4].index(name) + 1:02d}"


def locations(districts: Iterable[int]) -> list[dict[str, str | None]]:
    """The location hierarchy (country > region > district) of the `districts` (by index in
    `DISTRICTS`) where people of the country were born or live: one row per place, `{code,
    name, type, parent}` (`parent` the parent's code, None for the country), the country
    first, then each region followed by its districts, in code order. Addresses in the
    records carry the region's code (`region_code`) and the district's name (`locality`);
    places carry the district's name contained in the region's name."""
    used = sorted(set(districts))
    places: list[dict[str, str | None]] = [
        {"code": N.COUNTRY_CODE, "name": N.COUNTRY_NAME, "type": "country", "parent": None}
    ]
    for r in sorted({DISTRICTS[d][1] for d in used}):
        name, code = N.REGIONS[r][0], N.REGIONS[r][1]
        places.append({"code": code, "name": name, "type": "region", "parent": N.COUNTRY_CODE})
        places.extend(
            {"code": district_code(d), "name": DISTRICTS[d][0], "type": "district", "parent": code}
            for d in used
            if DISTRICTS[d][1] == r
        )
    return places
