"""Code directories (DIGEST §5.1, §6 #22): API behaviour, known values, generated file is fresh."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from dcihub.standard import codedirs
from dcihub.standard.codedirs import CodeDirectory
from specdir import PROJECT_ROOT, require_spec_dir

GENERATOR = PROJECT_ROOT / "tools" / "gen_codedirs.py"
GENERATED = PROJECT_ROOT / "src" / "dcihub" / "standard" / "codedirs" / "generated.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_codedirs", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_codedirs", module)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# API


def test_get_and_fields():
    ms = codedirs.get("marital_status")
    assert isinstance(ms, CodeDirectory)
    assert ms.name == "marital_status"
    assert ms.registry == "core"
    assert ms.source == "core/v1/code/MaritalStatusEnum.jsonld"
    assert ms.title == "Marital Status Type Enum"
    assert list(ms.codes) == ["S", "M", "W", "A", "D", "L", "U"]


def test_get_unknown_lists_names():
    with pytest.raises(KeyError) as info:
        codedirs.get("marital_stat")
    message = str(info.value)
    assert "marital_stat" in message
    assert "marital_status" in message and "relationship_type" in message


def test_contains_and_label_are_exact():
    ms = codedirs.get("marital_status")
    assert "W" in ms
    assert "w" not in ms
    assert 1 not in codedirs.get("farm_type")
    assert ms.label("W") == "Widow"
    assert ms.label("w") is None
    assert ms.label("X") is None
    assert ms.label(None) is None


def test_normalise_by_code_case_and_whitespace():
    ms = codedirs.get("marital_status")
    assert ms.normalise("W") == "W"
    assert ms.normalise("w") == "W"
    assert ms.normalise("  D ") == "D"
    sex = codedirs.get("sex")
    assert sex.normalise("FEMALE") == "female"


def test_normalise_by_label():
    ms = codedirs.get("marital_status")
    assert ms.normalise("widow") == "W"
    assert ms.normalise("Never Married") == "S"
    assert ms.normalise("never_married") == "S"
    assert ms.normalise("NEVER-MARRIED") == "S"
    assert ms.normalise("legally  separated") == "L"
    assert codedirs.get("employment_status").normalise("paid employment: employee") == "4"
    assert codedirs.get("impairment_type").normalise("mobility") == "3"


def test_normalise_by_int():
    assert codedirs.get("farm_type").normalise(3) == "3"
    assert codedirs.get("disability_status").normalise(0) == "0"
    assert codedirs.get("aquaculture").normalise(321) == "0321"
    assert codedirs.get("crop_activity").normalise(11) == "011"
    assert codedirs.get("farm_type").normalise(7) is None
    assert codedirs.get("marital_status").normalise(1) is None


def test_normalise_namespaced_code():
    assert codedirs.get("marital_status").normalise("category:W") == "W"
    assert codedirs.get("sex").normalise("spdci:category:male") == "male"


def test_normalise_unknown_is_none():
    ms = codedirs.get("marital_status")
    for value in ("", "   ", "X", "widower", "category:", None, True, False, 1.0, ["W"], {"W": 1}):
        assert ms.normalise(value) is None, value
    assert codedirs.get("farm_type").normalise(True) is None


def test_codes_are_read_only():
    ms = codedirs.get("marital_status")
    with pytest.raises(TypeError):
        ms.codes["X"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ms.name = "other"  # type: ignore[misc]
    assert hash(ms) == hash(codedirs.get("marital_status"))


def test_constructor_accepts_plain_mappings():
    d = CodeDirectory("t", "T", "core", "x.jsonld", {"1": "One", "A": "Ay"}, {"Uno": "1"})
    assert d.normalise("uno") == "1"
    assert d.normalise(1) == "1"
    assert d.normalise("a") == "A"
    with pytest.raises(ValueError):
        CodeDirectory("t", "T", "core", "x.jsonld", {"1": "One"}, {"Two": "2"})


def test_all_directories_sorted_unique_and_consistent():
    directories = codedirs.all_directories()
    names = list(directories)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name, directory in directories.items():
        assert directory.name == name
        assert directory.codes, name
        assert directory.registry in {"core", "crvs", "dr", "fr", "ibr", "ess", "id", "social"}
        assert directory.source.endswith(".jsonld") and "/v1/code/" in directory.source
        for code, label in directory.codes.items():
            assert code and code == code.strip()
            assert label and label == " ".join(label.split())
            assert directory.normalise(code) == code
            if (name, code) != ("relationship_type", "SONC"):  # label "son" is code SON
                assert directory.normalise(label) == code, (name, label)
        for label, code in directory.aliases.items():
            assert directory.normalise(label) == code


def test_expected_names():
    expected = {
        "identifier_type", "marital_status", "sex", "relationship_type", "disability_type",
        "functional_limitation_type", "functional_severity", "education_level",
        "employment_status", "occupation", "income_level", "language_code", "assistance_unit",
        "vital_event", "disability_status", "disability_level", "impairment_type",
        "impairment_level", "impairment_cause", "disability_onset", "human_assistance_type",
        "support_frequency", "support_status", "assistive_technology", "medical_care",
        "housing_support", "housing_type", "animal_assistance", "transport_requirement",
        "farm_type", "crop_activity", "crop_type", "crop_end_use", "irrigation_water",
        "fertilizer_type", "land_tenure", "livestock_system", "animal_type", "aquaculture",
        "aqua_support_activity", "agri_support_activity", "forest_activity", "machinery_type",
        "equipment_source", "measurement_unit", "enrollment_status", "benefit_type",
        "contribution_type", "institution_type", "legal_status", "programme_type",
        "social_protection_function", "employment_type", "ess_enrolment_status",
        "unemployment_reason", "biometric_data_type",
    }  # fmt: skip
    assert set(codedirs.all_directories()) == expected
    assert codedirs.get("ess_enrolment_status").registry == "ess"
    assert codedirs.get("enrollment_status").registry == "ibr"


# ---------------------------------------------------------------------------------------------
# Known values (DIGEST §5.1)


def test_core_values():
    assert codedirs.get("marital_status").label("W") == "Widow"  # "widowed"
    assert list(codedirs.get("sex").codes) == ["male", "female", "other", "unknown"]
    assert list(codedirs.get("identifier_type").codes) == ["UIN", "BRN", "MRN", "DRN"]
    assert list(codedirs.get("education_level").codes) == [str(i) for i in range(9)]
    assert list(codedirs.get("occupation").codes) == [str(i) for i in range(10)]
    assert list(codedirs.get("assistance_unit").codes) == ["1", "2", "3"]
    assert list(codedirs.get("functional_severity").codes) == ["1", "2", "3", "4"]
    for name in ("disability_type", "functional_limitation_type"):
        assert list(codedirs.get(name).codes) == [
            "VIS_SS", "HEAR_SS", "MOB_SS", "COG_SS", "SC_SS", "COM_SS"
        ]  # fmt: skip
    assert list(codedirs.get("vital_event").codes) == [
        "live_birth", "death", "fetal_death", "marriage", "divorce", "adoption"
    ]  # fmt: skip


def test_extension_values():
    assert codedirs.get("impairment_type").label("3") == "Mobility"
    assert codedirs.get("disability_status").label("0") == "Approved"
    assert codedirs.get("enrollment_status").label("1") == "Active"
    assert list(codedirs.get("farm_type").codes) == ["1", "2", "3", "4", "5", "6"]
    assert list(codedirs.get("impairment_level").codes) == ["1", "2", "3", "4"]
    assert codedirs.get("impairment_level").label("4") == "Extreme"
    assert codedirs.get("impairment_level").source == "extensions/dr/v1/code/ImpairmentLevel.jsonld"
    assert codedirs.get("measurement_unit").label("6") == "DU"
    assert codedirs.get("animal_type").label("8") == "Insects and worms"
    assert list(codedirs.get("ess_enrolment_status").codes) == [str(i) for i in range(1, 8)]


def test_relationship_type_uses_hl7_spellings():
    rel = codedirs.get("relationship_type")
    assert len(rel.codes) == 107
    for code in ("CHLDADOPT", "CHLDFOST", "MTHFOST", "MGGRMTH", "GRNDSON", "STPSIS", "STPSIB"):
        assert code in rel
    for wrong in ("CHILDADOPT", "CHILDFOST", "FOSTMTH", "MGGRNTH", "GRANDSON", "STEPSIS"):
        assert wrong not in rel
    assert rel.label("CHLDFOST") == "foster child"  # the file says "foster son" like SONFOST
    assert rel.normalise("foster son") == "SONFOST"
    assert rel.normalise("NIECE") == "NEICE"  # HL7 spelling of the code is accepted
    assert rel.normalise("borther") == "BRO"  # the file's typo is still accepted
    assert rel.label("SONC") == "son"
    assert rel.normalise("son") == "SON"  # codes win over labels ("natural son")
    assert list(rel.codes)[:4] == ["SELF", "PRIMSPOUS", "FAMMEMB", "CHILD"]


def test_defect_resolutions():
    # EmploymentStatus: 8 defined, 7 listed -> all 8
    assert list(codedirs.get("employment_status").codes) == [str(i) for i in range(1, 9)]
    # LandTenure: duplicate 1 -> first label, second accepted; listed-only 7 dropped
    tenure = codedirs.get("land_tenure")
    assert list(tenure.codes) == ["1", "2", "3", "4", "5", "6"]
    assert tenure.label("1") == "Owner"
    assert tenure.normalise("Non-legal ownership/Squatting illegally on land") == "1"
    # EquipmentSource: 7th id source:4 -> 7
    source = codedirs.get("equipment_source")
    assert list(source.codes) == [str(i) for i in range(1, 8)]
    assert source.label("7") == "Provided by a government agency"
    assert source.label("4") == "Provided by other private holders (excluding cooperatives)"
    # Machineries: 37 defined but not listed -> included, last
    assert list(codedirs.get("machinery_type").codes)[-1] == "37"
    # ProgrammeType: programme14 -> 14, and 14 codes (the listed 15 is never defined)
    assert list(codedirs.get("programme_type").codes) == [str(i) for i in range(1, 15)]
    # ESS UnemploymentReason: 8 defined, 6 listed
    assert list(codedirs.get("unemployment_reason").codes) == [str(i) for i in range(1, 9)]


# ---------------------------------------------------------------------------------------------
# The committed module equals a fresh generation


def test_generated_module_is_up_to_date():
    spec_dir = require_spec_dir()
    generator = load_generator()
    expected = generator.generate(spec_dir)
    assert GENERATED.read_text(encoding="utf-8") == expected, (
        "src/dcihub/standard/codedirs/generated.py is stale: run python tools/gen_codedirs.py"
    )


def test_generator_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    spec_dir = require_spec_dir()
    generator = load_generator()
    out = tmp_path / "generated.py"
    assert generator.main(["--spec-dir", str(spec_dir), "--output", str(out)]) == 0
    assert generator.main(["--spec-dir", str(spec_dir), "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace('"Widow"', '"Widowed"'))
    assert generator.main(["--spec-dir", str(spec_dir), "--output", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().out


def test_generator_reads_only_v1_code_files():
    spec_dir = require_spec_dir()
    generator = load_generator()
    sources = {d.source for d in generator.build(spec_dir)}
    assert all(s.startswith(("core/v1/code/", "extensions/")) for s in sources)
    assert not any("common/" in s or "api-schemas" in s for s in sources)


def _copy_code_files(spec_dir: Path, target: Path) -> Path:
    """A scratch copy of the code files (in tmp_path only) for the failure tests."""
    schemas = spec_dir / "schemas"
    for path in schemas.glob("core/v1/code/*.jsonld"):
        dest = target / "schemas" / path.relative_to(schemas)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    for path in schemas.glob("extensions/*/v1/code/*.jsonld"):
        dest = target / "schemas" / path.relative_to(schemas)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    return target


def test_generator_fails_loudly_on_invalid_json(tmp_path: Path):
    spec_dir = _copy_code_files(require_spec_dir(), tmp_path)
    generator = load_generator()
    broken = tmp_path / "schemas" / "core" / "v1" / "code" / "SexCategoryEnum.jsonld"
    broken.write_text(broken.read_text(encoding="utf-8").rstrip().rstrip("}") + ",}")
    with pytest.raises(generator.SpecError, match="SexCategoryEnum.jsonld: not valid JSON"):
        generator.build(spec_dir)
    assert generator.main(["--spec-dir", str(spec_dir), "--output", str(tmp_path / "o.py")]) == 2
    assert not (tmp_path / "o.py").exists()


def test_generator_rejects_unacknowledged_anomaly(tmp_path: Path):
    spec_dir = _copy_code_files(require_spec_dir(), tmp_path)
    generator = load_generator()
    path = tmp_path / "schemas" / "core" / "v1" / "code" / "MaritalStatusEnum.jsonld"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["@graph"][0]["owl:oneOf"].append("category:Z")  # listed, never defined
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(generator.SpecError, match="listed but undefined"):
        generator.build(spec_dir)


def test_name_derivation():
    generator = load_generator()
    assert generator.snake_name("MaritalStatusEnum") == "marital_status"
    assert generator.snake_name("FunctionalLimitationType") == "functional_limitation_type"
    assert generator.snake_name("UINEnum") == "uin"
    assert generator.collision_key("ess_enrolment_status") != generator.collision_key(
        "enrollment_status"
    )
    assert generator.collision_key("enrolment_status") == generator.collision_key(
        "enrollment_status"
    )
