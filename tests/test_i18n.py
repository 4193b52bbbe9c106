"""The English catalogue is complete: every string the code and templates ask to
translate has a real English translation, with the same placeholders.

The strings are extracted here, in-process, the way ``make messages`` does it
(babel.cfg's methods, the Makefile's extra ``-k`` keywords), so a new ``_("…")``
in code or a template fails this test even if nobody re-ran ``make messages``.
To fix a failure: ``make messages``, translate the new entries in
moralbank/translations/en/LC_MESSAGES/messages.po, ``make translations``.
"""
from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from support import csrf_from

ROOT = Path(__file__).resolve().parents[1]
PO_FILE = ROOT / "moralbank" / "translations" / "en" / "LC_MESSAGES" / "messages.po"

#: a %-format placeholder: %(name)s, %(points)+d, %s … (``%%`` is a literal percent sign)
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")
#: Chinese characters, CJK punctuation (「」。、) and full-width forms (，：（）)
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def placeholders(text: str) -> set[str]:
    return {token for token in PLACEHOLDER.findall(text) if token != "%%"}


def makefile_keywords() -> dict:
    """Babel's default keywords plus the ``-k`` ones of the Makefile's ``messages`` target."""
    keywords = dict(DEFAULT_KEYWORDS)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for line in makefile.splitlines():
        if "pybabel extract" in line:
            for name in re.findall(r"(?:-k|--keywords?)[ =](\S+)", line):
                keywords.setdefault(name, None)
    return keywords


@lru_cache(maxsize=1)
def extracted() -> dict[tuple[str, str | None], list[str]]:
    """(msgid, context) -> where it is used, for every translatable string in the project."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as fileobj:
        method_map, options_map = parse_mapping_cfg(fileobj, "babel.cfg")
    found: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for filename, lineno, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=makefile_keywords(), strip_comment_tags=True):
        msgid = message[0] if isinstance(message, (list, tuple)) else message
        if msgid:
            found[(msgid, context)].append(f"{filename}:{lineno}")
    return dict(found)


@lru_cache(maxsize=1)
def catalogue():
    with open(PO_FILE, "rb") as fileobj:
        return read_po(fileobj, locale="en")


def test_extraction_finds_the_strings_of_code_and_templates():
    """Guard against a broken extraction passing vacuously."""
    messages = extracted()
    places = [place for where in messages.values() for place in where]
    assert ("道德银行", None) in messages and ("我家的积分", None) in messages
    assert any(place.startswith("moralbank") and ".py:" in place for place in places)
    assert any(place.startswith("templates") and ".html:" in place for place in places)
    assert len(messages) > 100


def test_every_string_has_an_english_translation_with_the_same_placeholders():
    cat = catalogue()
    problems = []
    for (msgid, context), where in sorted(extracted().items()):
        entry = cat.get(msgid, context=context)
        place = where[0]
        if entry is None:
            problems.append(f"{place}: not in messages.po (run `make messages`): {msgid!r}")
            continue
        strings = entry.string if isinstance(entry.string, (list, tuple)) else [entry.string]
        if entry.fuzzy:
            problems.append(f"{place}: fuzzy: {msgid!r}")
        if not all(s and s.strip() for s in strings):
            problems.append(f"{place}: untranslated: {msgid!r}")
            continue
        for text in strings:
            if placeholders(text) != placeholders(msgid):
                problems.append(f"{place}: placeholders {sorted(placeholders(text))} in {text!r} "
                                f"should be {sorted(placeholders(msgid))} as in {msgid!r}")
            elif placeholders(msgid):
                values = defaultdict(lambda: 1)
                try:
                    text % values
                except (TypeError, ValueError, KeyError) as error:
                    problems.append(f"{place}: {text!r} does not format: {error}")
        if any(CJK.search(s) for s in strings):
            problems.append(f"{place}: English translation still has Chinese in it: {strings!r}")
    assert not problems, f"{len(problems)} problem(s) in the English catalogue:\n" + "\n".join(problems)


def test_english_login_page_has_no_chinese(client):
    html = client.get("/login?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html
    main = html.split("<main>", 1)[1].split("</main>", 1)[0]
    assert "Log in" in main
    assert not CJK.findall(main), f"Chinese in the English login page: {CJK.findall(main)}"
    # Outside <main> too, except the switch back to Chinese, which is labelled in Chinese on purpose.
    rest = re.sub(r'<a [^>]*lang="zh-CN"[^>]*>[^<]*</a>', "", html)
    assert not CJK.findall(rest), f"Chinese in the English login page: {CJK.findall(rest)}"


# --- strings translated at run time from a variable ------------------------------------------
# ``_(label)`` with a variable cannot be seen by extraction, so such labels are marked where
# they are defined with the no-op ``N_`` (moralbank.i18n), which the Makefile's ``-k`` list
# includes; these tests catch a label that loses its mark or its translation.

def dynamic_labels() -> dict[str, str]:
    from moralbank.awards import rules, service
    from moralbank.awards.models import CATEGORIES
    from moralbank.web.views import LoginForm

    labels = {f"CATEGORIES[{key!r}]": label for key, label in CATEGORIES.items()}
    labels |= {f"STATUS_LABELS[{key!r}]": label for key, label in service.STATUS_LABELS.items()}
    labels |= {f"_PERIOD_WORDS[{key!r}]": label for key, label in rules._PERIOD_WORDS.items()}
    for name in ("phone", "password"):
        for validator in getattr(LoginForm, name).kwargs.get("validators", []):
            if getattr(validator, "message", None):
                labels[f"LoginForm.{name} {type(validator).__name__}"] = str(validator.message)
    return labels


def test_labels_translated_at_run_time_are_in_the_catalogue():
    cat = catalogue()
    missing = [f"{where}: {label!r}" for where, label in dynamic_labels().items()
               if cat.get(label) is None or not cat.get(label).string or cat.get(label).fuzzy]
    assert not missing, "not translated:\n" + "\n".join(missing)


def test_english_login_errors_have_no_chinese(client):
    page = client.get("/login?lang=en").get_data(as_text=True)
    response = client.post("/login", data={"phone": "", "password": "", "csrf_token": csrf_from(page)})
    assert response.status_code == 400
    main = response.get_data(as_text=True).split("<main>", 1)[1].split("</main>", 1)[0]
    assert not CJK.findall(main), f"Chinese in the English login page: {CJK.findall(main)}"
