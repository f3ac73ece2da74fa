"""Who may join a Community of Practice: countries, authority types and the eligibility
rule of Directive 2014/24/EU Art. 2(1). Pure functions, no storage, no Matrix."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum

from commands.args import ArgError
from commands.text import excerpt, fold, match_key
from config.models import AUTHORITY_TYPES

# EU-27 and the EEA countries (IS, LI, NO). The codes are ISO 3166, except Greece, which is
# EL as the Commission writes it (ISO's GR is accepted and stored as EL).
COUNTRIES: dict[str, str] = {
    "AT": "Austria",
    "BE": "Belgium",
    "BG": "Bulgaria",
    "HR": "Croatia",
    "CY": "Cyprus",
    "CZ": "Czechia",
    "DK": "Denmark",
    "EE": "Estonia",
    "FI": "Finland",
    "FR": "France",
    "DE": "Germany",
    "EL": "Greece",
    "HU": "Hungary",
    "IS": "Iceland",
    "IE": "Ireland",
    "IT": "Italy",
    "LV": "Latvia",
    "LI": "Liechtenstein",
    "LT": "Lithuania",
    "LU": "Luxembourg",
    "MT": "Malta",
    "NL": "Netherlands",
    "NO": "Norway",
    "PL": "Poland",
    "PT": "Portugal",
    "RO": "Romania",
    "SK": "Slovakia",
    "SI": "Slovenia",
    "ES": "Spain",
    "SE": "Sweden",
}
EU27 = frozenset(COUNTRIES) - {"IS", "LI", "NO"}
EEA_ONLY = frozenset({"IS", "LI", "NO"})
COUNTRY_ALIASES = {"GR": "EL"}
"""Codes that differ from the ones the bot stores (ISO's GR for Greece)."""
NATIVE_NAMES: dict[str, tuple[str, ...]] = {
    "AT": ("Österreich", "Oesterreich"),
    "BE": ("Belgique", "België", "Belgien"),
    "BG": ("България", "Bulgariya", "Balgariya"),
    "HR": ("Hrvatska",),
    "CY": ("Κύπρος", "Kypros", "Kıbrıs"),
    "CZ": ("Česko", "Česká republika", "Czech Republic"),
    "DK": ("Danmark",),
    "EE": ("Eesti",),
    "FI": ("Suomi",),
    "DE": ("Deutschland",),
    "EL": ("Ελλάδα", "Ελλάς", "Ellada", "Hellas", "Hellenic Republic"),
    "HU": ("Magyarország",),
    "IS": ("Ísland",),
    "IE": ("Éire", "Eire"),
    "IT": ("Italia",),
    "LV": ("Latvija",),
    "LT": ("Lietuva",),
    "LU": ("Lëtzebuerg", "Luxemburg"),
    "NL": ("Nederland", "The Netherlands", "Holland"),
    "NO": ("Norge", "Noreg"),
    "PL": ("Polska",),
    "RO": ("România",),
    "SK": ("Slovensko",),
    "SI": ("Slovenija",),
    "ES": ("España",),
    "SE": ("Sverige",),
}
"""Names in the country's own language(s), and a few other common ones; matched without
case or accents (:func:`~commands.text.match_key`), next to the English names."""
OUTSIDE_NAMES = frozenset(
    match_key(name)
    for name in (
        "United States", "United States of America", "USA", "America", "United Kingdom",
        "Great Britain", "England", "Scotland", "Wales", "Northern Ireland", "Switzerland",
        "Schweiz", "Suisse", "Svizzera", "Turkey", "Türkiye", "Ukraine", "Serbia", "Albania",
        "North Macedonia", "Montenegro", "Bosnia and Herzegovina", "Moldova", "Georgia",
        "Andorra", "Monaco", "San Marino", "Kosovo", "Canada", "Australia", "China", "Japan",
        "India", "Israel", "Morocco", "Russia", "Belarus",
    )
)  # fmt: skip
"""Countries people may well answer with that are outside the EU and the EEA (only to
word the answer: any name not in the lists above is refused either way)."""
COUNTRY_NAMES: dict[str, str] = {
    match_key(name): code
    for code, names in ((c, (n, *NATIVE_NAMES.get(c, ()))) for c, n in COUNTRIES.items())
    for name in names
}
"""Every name the bot understands (as a :func:`~commands.text.match_key`) -> its code."""
COUNTRY_CHOICES: list[str] = sorted(COUNTRIES, key=lambda code: COUNTRIES[code])
"""The numbered list offered in the join dialogue (by English name)."""

# Kinds of organisation. The six of the Directive are eligible; two borderline kinds are
# filed but flagged for the Secretariat; market actors are refused (they can be guests).
TYPE_LABELS: dict[str, str] = {
    "local-authority": "Local authority (city, municipality)",
    "regional-authority": "Regional authority (region, province, county)",
    "state-authority": "State authority (ministry, national agency)",
    "body-governed-by-public-law": (
        "Body governed by public law (e.g. public hospital, university, transport authority)"
    ),
    "association-of-authorities": "Association of public authorities",
    "central-purchasing-body": "Central purchasing body",
    "other-public-body": "Another public body (none of the above)",
    "public-company": "Publicly owned company or utility",
    "market-actor": "Company, consultancy, NGO or other market actor",
}
BORDERLINE_TYPES = ("other-public-body", "public-company")
REFUSED_TYPES = ("market-actor",)
TYPE_CHOICES: list[str] = list(TYPE_LABELS)
TYPE_ALIASES = {
    "utility": "public-company",
    "publicly-owned-company": "public-company",
    "company": "market-actor",
    "private-company": "market-actor",
    "consultancy": "market-actor",
    "ngo": "market-actor",
    "supplier": "market-actor",
    "industry-association": "market-actor",
    "other": "other-public-body",
    "municipality": "local-authority",
    "city": "local-authority",
    "region": "regional-authority",
    "ministry": "state-authority",
    "cpb": "central-purchasing-body",
}

# Legal forms of companies; an eligible type with such a name is flagged for a check.
_COMPANY_FORMS_EXACT = {
    "AG", "SA", "S.A", "SpA", "S.p.A", "Srl", "S.r.l", "BV", "B.V", "NV", "N.V", "Oy", "Oyj",
    "AB", "AS", "A/S", "ApS", "SAS", "SARL", "GmbH", "Ltd", "LTD", "plc", "PLC", "Inc", "LLC",
}  # fmt: skip
_COMPANY_WORDS = {"gmbh", "ltd", "limited", "plc", "llc", "stadtwerke", "utility", "utilities"}


def short_type(kind: str | None) -> str:
    """``local-authority`` -> ``local authority``."""
    if not kind:
        return "not set"
    return kind.replace("-", " ")


def canonical_country(code: str | None) -> str | None:
    """A stored or given code as the bot stores it (``GR`` -> ``EL``)."""
    if not code:
        return code
    return COUNTRY_ALIASES.get(code.upper(), code.upper())


def country_name(code: str | None) -> str:
    """``Greece (EL)``; ``not set`` when there is none."""
    if not code:
        return "not set"
    stored = canonical_country(code) or code
    return f"{COUNTRIES.get(stored, code)} ({stored})"


WHO_MAY_JOIN = (
    "Only contracting authorities (public buyers) established in the EU or the EEA can "
    "join: the 27 EU countries, Iceland, Liechtenstein and Norway"
)
COUNTRY_HINT = (
    "Write the country's name, in English or its own language, or its two-letter code: "
    "for example Deutschland or DE (EL or GR for Greece)"
)


def parse_country(token: str) -> str:
    """An EU/EEA country by code or name (English or the country's own language, any case,
    with or without accents, invisible characters ignored) -> its code (EL for Greece).

    Raises ArgError that says plainly who may join (no list of codes)."""
    raw = fold(token).strip().strip(".").strip()
    code = canonical_country(raw) or ""
    if code in COUNTRIES:
        return code
    key = match_key(raw)
    if key in COUNTRY_NAMES:
        return COUNTRY_NAMES[key]
    shown = excerpt(raw)
    if re.fullmatch(r"[A-Za-z]{2}", raw):
        problem = f"{raw.upper()} is not the code of an EU or EEA country"
    elif key in OUTSIDE_NAMES:
        problem = f"{shown} is not in the EU or the EEA"
    else:
        close = difflib.get_close_matches(key, list(COUNTRY_NAMES), n=1, cutoff=0.75)
        if close:
            guess = COUNTRY_NAMES[close[0]]
            raise ArgError(
                f"I don't know the country “{shown}”. Did you mean {COUNTRIES[guess]} "
                f"({guess})? {COUNTRY_HINT}"
            )
        problem = f"I don't know “{shown}” as a country of the EU or the EEA"
    raise ArgError(f"{problem}. {WHO_MAY_JOIN}. {COUNTRY_HINT}")


def parse_type(token: str) -> str:
    """A kind of organisation: one of :data:`TYPE_LABELS` (or a common alias)."""
    key = re.sub(r"[\s_]+", "-", match_key(token)).strip("-")
    key = TYPE_ALIASES.get(key, key)
    if key in TYPE_LABELS:
        return key
    raise ArgError(
        f"{token.strip()!r} is not a type I know. The contracting authorities are: "
        f"{', '.join(AUTHORITY_TYPES)}. If none fits: other-public-body or public-company "
        "(the Secretariat checks those), or market-actor"
    )


def parse_org(token: str) -> str:
    """The organisation's name as typed (spaces tidied); checked after :func:`fold`."""
    value = " ".join(token.split())
    checked = " ".join(fold(value).split())
    if len(checked) < 2 or not any(ch.isalpha() for ch in checked):
        raise ArgError("the organisation's name should be its full name, e.g. City of Oslo")
    if len(value) > 300:
        raise ArgError("the organisation's name is too long (300 characters at most)")
    return value


def parse_choice(answer: str, choices: list[str]) -> str | None:
    """``"3"`` or ``"3."`` -> the third choice; None when the answer is not a number in range."""
    match = re.fullmatch(r"\s*(\d{1,2})[.)]?\s*", fold(answer))
    if match is None:
        return None
    number = int(match.group(1))
    return choices[number - 1] if 1 <= number <= len(choices) else None


def company_form(org: str | None) -> str | None:
    """The company legal form in an organisation's name (``GmbH``, ``Ltd``), if any."""
    for found in re.findall(r"[\w./]+", fold(org or "")):
        word = str(found).rstrip(".")
        if word in _COMPANY_FORMS_EXACT or word.lower() in _COMPANY_WORDS:
            return word
    return None


class Verdict(Enum):
    ELIGIBLE = "eligible"
    FLAGGED = "flagged"
    """Filed, but the Secretariat should check it first."""
    REFUSED = "refused"


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reason: str = ""
    """Why it is flagged (for the Secretariat) or refused (for the applicant)."""


def assess(org: str | None, country: str | None, kind: str | None) -> Assessment:
    """Can an organisation with this profile join a CoP? (The name is checked after
    :func:`fold`: invisible characters cannot hide a company's legal form.)"""
    country = canonical_country(country)
    if country not in COUNTRIES:
        return Assessment(
            Verdict.REFUSED,
            "only organisations established in the EU or the EEA can join, and "
            f"{country or 'your country'} is not one of those countries",
        )
    if kind in REFUSED_TYPES:
        return Assessment(
            Verdict.REFUSED,
            "the Communities of Practice are open only to contracting authorities (public "
            "buyers), and you told me your organisation is a company, consultancy, NGO or "
            "other market actor",
        )
    if kind == "other-public-body":
        return Assessment(
            Verdict.FLAGGED,
            "the applicant says it is another public body (none of the six types of "
            "contracting authority): check that it is a contracting authority",
        )
    if kind == "public-company":
        return Assessment(
            Verdict.FLAGGED,
            "the applicant says it is a publicly owned company or utility: check that it is "
            "a body governed by public law",
        )
    if kind not in AUTHORITY_TYPES:
        return Assessment(Verdict.REFUSED, "your organisation's type is not one I know")
    form = company_form(org)
    if form is not None:
        return Assessment(
            Verdict.FLAGGED,
            f"the organisation's name contains “{form}”, which looks like a company: check "
            "that it is a contracting authority",
        )
    return Assessment(Verdict.ELIGIBLE)
