"""Life goes on in the demo country (`dcihub demo --events-per-minute N`): a stream of
plausible life events, drawn from the registries' current data and recorded through the same
write path as `dcihub record` (`store.changes.record_change`), so every event raises its
registry events and the subscriptions they match are notified.

- deaths, mostly of old people (and the deceased's active IBR enrolments end: `Deceased`);
- births to women of child-bearing age, with the husband as father where she is married (the
  couple shares a marriage register number); the newborn joins the mother's household in the
  Social Registry;
- marriages of two single adults;
- a young adult leaves the parents' household and registers a household of their own;
- disability status changes (assessed, expired, re-assessed) and new registrations of older
  people with disability;
- IBR enrolments suspended, graduated or reinstated;
- ESS employment changes (a job found, a job lost: then often enrolment in the Employment and
  Support Allowance) and new job seekers;
- new farmers.

Given the seed and the store's contents the sequence is deterministic: candidates are drawn
by position in primary-key order and new identifiers come from the same seeded generator.
Only the registries the store holds data for are touched.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, select

from ..store import Store
from ..store.changes import ChangeError, StoreChangeContext, record_change
from . import names as N

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One change recorded for a life event."""

    registry: str
    change: str
    options: dict[str, str]
    keys: list[str] = field(default_factory=list)
    notifications: int = 0


@dataclass
class LifeEvent:
    """A life event: what happened (one line) and the changes it was recorded as."""

    number: int
    kind: str
    summary: str
    steps: list[Step] = field(default_factory=list)

    @property
    def notifications(self) -> int:
        return sum(s.notifications for s in self.steps)

    def line(self) -> str:
        changes = ", ".join(f"{s.change} {s.registry}" for s in self.steps)
        return (
            f"event {self.number:>5}  {self.summary}  [{changes}]  "
            f"notifications queued: {self.notifications}"
        )


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def _uin_of(identifiers: Any) -> str | None:
    for ident in identifiers or []:
        if isinstance(ident, dict) and ident.get("identifier_type") == "UIN":
            return str(ident.get("identifier_value"))
    return None


def _name(person: dict[str, Any]) -> str:
    name = person.get("name") or {}
    return " ".join(str(name[k]) for k in ("given_name", "surname") if name.get(k)) or "someone"


def _age(person: dict[str, Any], today: date) -> int | None:
    try:
        born = date.fromisoformat(str(person.get("birth_date"))[:10])
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class LifeStream:
    """Draws and records life events; `step()` records one, `start()` plays them in a
    background thread at `events_per_minute`."""

    def __init__(
        self,
        store: Store,
        seed: int,
        events_per_minute: float,
        registries: list[str] | None = None,
        on_event: Callable[[LifeEvent], None] | None = None,
        today: Callable[[], date] | None = None,
    ) -> None:
        if events_per_minute <= 0:
            raise ValueError("events per minute must be positive")
        self.store = store
        self.rng = random.Random(f"life:{seed}")
        self.interval = 60.0 / events_per_minute
        self.registries = [r for r in (registries or list(store.profiles)) if r in store.profiles]
        self.on_event = on_event
        self.today = today or (lambda: datetime.now(UTC).date())
        self.count = 0
        self.skipped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        kinds: list[tuple[str, float, Callable[[LifeEvent], bool], tuple[str, ...]]] = [
            ("death", 3.0, self._death, ("crvs",)),
            ("birth", 3.0, self._birth, ("crvs",)),
            ("marriage", 1.5, self._marriage, ("crvs",)),
            ("new-household", 1.0, self._new_household, ("social",)),
            ("disability-status", 1.0, self._disability_status, ("dr",)),
            ("disability-register", 0.5, self._disability_register, ("dr", "crvs")),
            ("enrolment-status", 1.5, self._enrolment_status, ("ibr",)),
            ("employment", 2.0, self._employment, ("ess",)),
            ("job-seeker", 0.5, self._job_seeker, ("ess", "crvs")),
            ("farmer", 0.5, self._farmer, ("fr", "crvs")),
        ]
        self.kinds = [k for k in kinds if all(r in self.registries for r in k[3])]
        if not self.kinds:
            raise ValueError("no registry with life events: " + ", ".join(self.registries))

    # ------------------------------------------------------------------------ running

    def start(self) -> LifeStream:
        self._thread = threading.Thread(target=self._run, name="dcihub-life", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a database hiccup: log it, keep the country alive
                log.exception("life event failed")
            next_at = max(next_at + self.interval, time.monotonic() - 5 * self.interval)
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def step(self) -> LifeEvent | None:
        """Draw one life event and record it (None: no candidate for the kinds drawn)."""
        for _ in range(10):
            weights = [k[1] for k in self.kinds]
            kind, _w, draw, _regs = self.rng.choices(self.kinds, weights)[0]
            event = LifeEvent(self.count + 1, kind, "")
            try:
                done = draw(event)
            except ChangeError as exc:  # a candidate changed meanwhile: draw again
                log.info("life event %s skipped: %s", kind, exc)
                done = bool(event.steps)
            if done:
                self.count += 1
                if self.on_event is not None:
                    self.on_event(event)
                return event
            self.skipped += 1
        return None

    # ------------------------------------------------------------------------ helpers

    def _record(self, event: LifeEvent, registry: str, change: str, **options: str) -> Step:
        done = record_change(self.store, registry, change, dict(options), rng=self.rng)
        step = Step(registry, change, dict(options), [k for k, _ in done.keys], done.notifications)
        event.steps.append(step)
        return step

    def _pick(self, registry: str, entity: str, *where: Any) -> dict[str, Any] | None:
        """A record of `entity` matching `where`, drawn by position in key order."""
        main = self.store.records.tables(registry, entity).main
        condition = and_(*where)
        with self.store.read() as conn:
            total = conn.execute(
                select(func.count()).select_from(main).where(condition)
            ).scalar_one()
            if not total:
                return None
            row = conn.execute(
                select(main.c.pk, main.c.parent_pk, main.c.record)
                .where(condition)
                .order_by(main.c.pk)
                .offset(self.rng.randrange(total))
                .limit(1)
            ).first()
        if row is None:
            return None
        record = dict(orjson.loads(row.record))
        record["__parent_pk"] = row.parent_pk
        return record

    def _holder(self, registry: str, id_type: str, value: str) -> dict[str, Any] | None:
        """The top-level record of `registry` holding an identifier."""
        with self.store.read() as conn:
            return StoreChangeContext(self.store, conn, registry).find(id_type, value)

    def _parent(self, registry: str, entity: str, pk: int) -> dict[str, Any] | None:
        main = self.store.records.tables(registry, entity).main
        with self.store.read() as conn:
            text = conn.execute(select(main.c.record).where(main.c.pk == pk)).scalar()
        return dict(orjson.loads(text)) if text else None

    def _given(self, sex: str) -> str:
        return self.rng.choice(N.MALE_GIVEN_NAMES if sex == "male" else N.FEMALE_GIVEN_NAMES)

    def _living(self, main: Any, older: int | None = None, younger: int | None = None) -> list:
        today = self.today()
        out = [main.c.a_death_date.is_(None)]
        if older is not None:
            out.append(main.c.a_birth_date <= _years_ago(today, older))
        if younger is not None:
            out.append(main.c.a_birth_date > _years_ago(today, younger))
        return out

    # ------------------------------------------------------------------------ the events

    def _death(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("crvs", "Person").main
        old = self.rng.random() < 0.85
        where = self._living(main, older=65) if old else self._living(main, 18, 65)
        person = self._pick("crvs", "Person", *where)
        uin = _uin_of(person.get("identifier")) if person else None
        if person is None or uin is None:
            return False
        self._record(event, "crvs", "death", id=f"UIN={uin}")
        event.summary = f"death of {_name(person)} ({_age(person, self.today())}), UIN {uin}"
        if "ibr" in self.registries:
            ibr = self.store.records.tables("ibr", "Beneficiary")
            with self.store.read() as conn:
                keys = self._enrolments(conn, ibr, uin)
            for programme in keys:
                self._record(
                    event,
                    "ibr",
                    "enrolment-status",
                    id=f"UIN={uin}",
                    programme=programme,
                    status="2",
                )
        return True

    def _enrolments(self, conn: Connection, ibr: Any, uin: str) -> list[str]:
        """The programmes of the person's active IBR enrolments."""
        rows = conn.execute(
            select(ibr.main.c.record)
            .join(ibr.ids, ibr.ids.c.pk == ibr.main.c.pk)
            .where(
                ibr.ids.c.id_type == "UIN",
                ibr.ids.c.id_value == uin,
                ibr.main.c.a_enrollment_status == "1",
            )
            .order_by(ibr.main.c.pk)
        ).scalars()
        out = []
        for text in rows:
            for item in orjson.loads(text).get("programme_identifier") or []:
                if isinstance(item, dict) and item.get("programme_identifier"):
                    out.append(str(item["programme_identifier"]))
                    break
        return out

    def _birth(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("crvs", "Person").main
        mother = self._pick("crvs", "Person", main.c.a_sex == "female", *self._living(main, 18, 45))
        mother_uin = _uin_of(mother.get("identifier")) if mother else None
        if mother is None or mother_uin is None:
            return False
        options = {"mother": f"UIN={mother_uin}"}
        father = self._husband(mother)
        if father is not None:
            options["father"] = f"UIN={father}"
        sex = "female" if self.rng.random() < 0.49 else "male"
        given = self._given(sex)
        step = self._record(event, "crvs", "birth", **options, name=given, sex=sex)
        child = f"{given} to {_name(mother)}" + (" and her husband" if father else "")
        event.summary = f"birth of {child}"
        if "social" in self.registries and step.keys:
            hhid = _hhid(self._holder("social", "UIN", mother_uin))
            with self.store.read() as conn:
                record = self.store.records.get(conn, "crvs", step.keys[0]) or {}
            child_uin = _uin_of(record.get("identifier"))
            if hhid is not None and child_uin is not None:
                self._record(
                    event,
                    "social",
                    "member-join",
                    household=hhid,
                    id=f"UIN={child_uin}",
                    name=given,
                    sex=sex,
                    date=str(record.get("birth_date") or self.today().isoformat()),
                )
        return True

    def _husband(self, mother: dict[str, Any]) -> str | None:
        """The living spouse of a married woman (the couple shares its MRN)."""
        if mother.get("marital_status") != "M":
            return None
        mrns = [
            i.get("identifier_value")
            for i in mother.get("identifier") or []
            if isinstance(i, dict) and i.get("identifier_type") == "MRN"
        ]
        if not mrns:
            return None
        person = self.store.records.tables("crvs", "Person")
        own = _uin_of(mother.get("identifier"))
        with self.store.read() as conn:
            rows = conn.execute(
                select(person.main.c.record)
                .join(person.ids, person.ids.c.pk == person.main.c.pk)
                .where(
                    person.ids.c.id_type == "MRN",
                    person.ids.c.id_value == str(mrns[-1]),
                    person.main.c.a_death_date.is_(None),
                )
                .order_by(person.main.c.pk)
            ).scalars()
            for text in rows:
                uin = _uin_of(orjson.loads(text).get("identifier"))
                if uin is not None and uin != own:
                    return uin
        return None

    def _marriage(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("crvs", "Person").main
        single = main.c.a_marital_status == "S"
        bride = self._pick(
            "crvs", "Person", single, main.c.a_sex == "female", *self._living(main, 20, 40)
        )
        groom = self._pick(
            "crvs", "Person", single, main.c.a_sex == "male", *self._living(main, 22, 45)
        )
        uins = [_uin_of(p.get("identifier")) if p else None for p in (bride, groom)]
        if bride is None or groom is None or None in uins:
            return False
        self._record(event, "crvs", "marriage", id=f"UIN={uins[0]}", spouse=f"UIN={uins[1]}")
        event.summary = f"marriage of {_name(bride)} and {_name(groom)}"
        return True

    def _new_household(self, event: LifeEvent) -> bool:
        member = self.store.records.tables("social", "Member").main
        young = self._pick("social", "Member", *self._living(member, 20, 30))
        if young is None:
            return False
        household = self._parent("social", "Group", int(young["__parent_pk"]))
        hhid = _hhid(household)
        uin = _uin_of(young.get("member_identifier"))
        if household is None or hhid is None or uin is None:
            return False
        if len(household.get("member_list") or []) < 3:
            return False  # a young adult living alone or as a couple: not this story
        info = young.get("demographic_info") or {}
        self._record(event, "social", "member-leave", household=hhid, id=f"UIN={uin}")
        details = {
            "name": _name(info),
            "sex": str(info.get("sex") or ""),
            "birth_date": str(info.get("birth_date") or "")[:10],
        }
        self._record(
            event, "social", "register", id=f"UIN={uin}", **{k: v for k, v in details.items() if v}
        )
        event.summary = f"{_name(info)} leaves household {hhid} and registers their own"
        return True

    def _disability_status(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("dr", "DisabledPerson").main
        now, then = self.rng.choices((("1", "0"), ("0", "2"), ("2", "1")), (5, 2, 1))[0]
        person = self._pick("dr", "DisabledPerson", main.c.a_disability_status == now)
        uin = _uin_of((person or {}).get("personal_details", {}).get("member_identifier"))
        if person is None or uin is None:
            return False
        self._record(event, "dr", "disability-status", id=f"UIN={uin}", status=then)
        words = {"0": "approved", "1": "pending", "2": "expired"}
        info = person.get("personal_details", {}).get("demographic_info") or {}
        event.summary = f"disability status of {_name(info)}: {words[now]} -> {words[then]}"
        return True

    def _unregistered(self, registry: str, older: int, younger: int) -> dict[str, Any] | None:
        """A living person of the civil register aged [older, younger) whom `registry` does not
        hold yet."""
        main = self.store.records.tables("crvs", "Person").main
        for _ in range(5):
            person = self._pick("crvs", "Person", *self._living(main, older, younger))
            uin = _uin_of(person.get("identifier")) if person else None
            if person is None or uin is None:
                return None
            if self._holder(registry, "UIN", uin) is None:
                return person
        return None

    def _disability_register(self, event: LifeEvent) -> bool:
        person = self._unregistered("dr", 60, 100)
        if person is None:
            return False
        uin = _uin_of(person.get("identifier"))
        self._record(event, "dr", "register", id=f"UIN={uin}", status="1")
        event.summary = f"{_name(person)} ({_age(person, self.today())}) registers a disability"
        return True

    def _enrolment_status(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("ibr", "Beneficiary").main
        now, then = self.rng.choices((("1", "4"), ("1", "3"), ("4", "1")), (3, 1, 2))[0]
        enrolment = self._pick("ibr", "Beneficiary", main.c.a_enrollment_status == now)
        if enrolment is None:
            return False
        uin = _uin_of((enrolment.get("member") or {}).get("member_identifier"))
        programmes = enrolment.get("programme_identifier") or [{}]
        programme = programmes[0].get("programme_identifier") if programmes else None
        if uin is None or not programme:
            return False
        self._record(
            event, "ibr", "enrolment-status", id=f"UIN={uin}", programme=programme, status=then
        )
        words = {"1": "active", "3": "graduated", "4": "suspended"}
        event.summary = f"enrolment of UIN {uin} in {programme}: {words[now]} -> {words[then]}"
        return True

    def _employment(self, event: LifeEvent) -> bool:
        main = self.store.records.tables("ess", "Member").main
        found_work = self.rng.random() < 0.55
        member = self._pick(
            "ess",
            "Member",
            main.c.a_employment_status == ("2" if found_work else "1"),
            main.c.a_death_date.is_(None),
        )
        uin = _uin_of((member or {}).get("member_identifier"))
        if member is None or uin is None:
            return False
        who = _name(member.get("demographic_info") or {})
        self._record(event, "ess", "employment", id=f"UIN={uin}", status="1" if found_work else "2")
        if found_work:
            event.summary = f"{who} found a job"
            return True
        event.summary = f"{who} lost their job"
        enrolled = {
            str(p.get("programme_identifier"))
            for e in member.get("programme_enrolments") or []
            for p in e.get("programme_identifier") or []
        }
        if "ESA" not in enrolled and self.rng.random() < 0.5:
            self._record(event, "ess", "enrolment", id=f"UIN={uin}", programme="ESA")
            event.summary += " and claims the Employment and Support Allowance"
        return True

    def _job_seeker(self, event: LifeEvent) -> bool:
        person = self._unregistered("ess", 18, 60)
        if person is None:
            return False
        uin = _uin_of(person.get("identifier"))
        self._record(event, "ess", "register", id=f"UIN={uin}", status="2")
        event.summary = f"{_name(person)} registers as a job seeker"
        return True

    def _farmer(self, event: LifeEvent) -> bool:
        person = self._unregistered("fr", 18, 80)
        if person is None:
            return False
        uin = _uin_of(person.get("identifier"))
        self._record(event, "fr", "register", id=f"UIN={uin}")
        event.summary = f"{_name(person)} registers as a farmer"
        return True


def _hhid(household: dict[str, Any] | None) -> str | None:
    for ident in (household or {}).get("group_identifier") or []:
        if isinstance(ident, dict) and ident.get("identifier_type") == "HHID":
            return str(ident.get("identifier_value"))
    return None
