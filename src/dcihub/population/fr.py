"""Farmer Registry: a Farmer record per registered farmer.

Farming is far more common in rural households: 36 % of the living adults aged 18-80 of a
rural household farm, 4.5 % in towns (~20 % overall). A farmer has one farm (15 %: two) in
the household's district, with crops and/or animals, a log-normal land size (median about
one hectare), machinery that grows with the land, an FRN, and the household's HHID when the
Social Registry registered the household.

Publishes `Farmers` for the other builders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from dcihub.population.social import Households, Surveyed
from dcihub.population.world import (
    Record,
    World,
    add_years,
    between,
    ident,
    place,
    requires,
    stamp,
    stamps,
)

NAME = "fr"


@dataclass
class Farmers:
    """Who is in the Farmer Registry: person -> FRN, total land (hectares), registration day."""

    frn: dict[int, str] = field(default_factory=dict)
    land: dict[int, float] = field(default_factory=dict)
    registered: dict[int, int] = field(default_factory=dict)


@requires("dcihub.population.social:survey")
def build(w: World) -> list[Record]:
    rng = w.rng("fr")
    households = w.fact(Households).of
    known = Farmers()
    records = []
    for i in range(w.n):
        if not w.alive(i) or not 18 <= w.age(i) <= 80:
            continue
        seen = households[w.household[i]]
        if rng.random() < (0.36 if seen.rural else 0.045):
            records.append(_farmer(w, known, i, seen, rng))
    w.publish(known)
    w.samples[NAME] = {
        "identifiers": [
            item
            for i, frn in list(known.frn.items())[:1]
            for item in ({"type": "UIN", "value": w.uin[i]}, {"type": "FRN", "value": frn})
        ],
        "farmers": [{"type": "UIN", "value": w.uin[i]} for i in list(known.frn)[:5]],
    }
    return records


def _farmer(w: World, known: Farmers, i: int, seen: Surveyed, rng: random.Random) -> Record:
    hh = seen.household
    known.frn[i] = f"FRN-{w.serial(len(known.frn) + 1):07d}"
    reg = between(rng, max(add_years(w.birth[i], 18), w.digital_since), w.today)
    known.registered[i] = reg
    farms = [_farm(hh.district, reg, rng) for _ in range(1 if rng.random() < 0.85 else 2)]
    land = round(sum(f["land_size"] for f in farms), 2)
    known.land[i] = land
    member = w.member_core(i, [ident("FRN", known.frn[i])])
    member["employment_status"] = "6"
    member["occupation"] = "6"
    registered, updated = stamps(reg, between(rng, reg, w.today), rng)
    member["registration_date"] = member["last_updated"] = registered
    rec: Record = {
        "@type": "Farmer",
        "@id": f"fr:farmer:{w.uin[i]}",
        "farmer_personal_details": member,
    }
    if seen.registered:
        assert seen.hhid is not None, "a registered household has its HHID"
        rec["family_details"] = {
            "group_identifier": [ident("HHID", seen.hhid)],
            "group_size": len(hh.members),
        }
    rec["farm_type"] = (
        "1" if land < 2 else "2" if land < 5 else "3" if land < 20 else "4" if land < 100 else "5"
    )
    rec["farm_details"] = farms
    rec["machineries_details"] = _machinery(land, rng)
    rec["registration_date"], rec["last_updated"] = registered, updated
    return rec


def _farm(district: int, reg: int, rng: random.Random) -> Record:
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
        "location": place(district),
        "land_tenure": rng.choice("1111122345556"),
        "land_size": size,
        "measurment": "0",
        "farming_activities": activities,
        "registration_date": stamp(reg, rng),
    }


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
