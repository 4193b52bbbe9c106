"""Password policy (ASVS 5, level 2): long enough, not a common password, not the phone number.

``common-passwords.txt.gz`` is the list Django ships (django/contrib/auth, BSD licence: 20,000 of
the most common passwords from public breach corpora, lower-cased). Passwords common among Chinese
users that are long enough to pass the length rule are added below.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from flask_babel import gettext as _

MIN_PASSWORD = 8
MAX_PASSWORD = 256

_LIST = Path(__file__).with_name("common-passwords.txt.gz")

#: frequent in Chinese breach lists (digits that read as words: 5201314 "I love you for life", …)
_CHINESE_COMMON = """
12345678 123456789 1234567890 11111111 88888888 66666666 00000000 99999999 87654321 12341234
11223344 11112222 123123123 147258369 147852369 159753456 5201314520 1314520520 520520520
52013145 13145200 woaini1314 woaini520 iloveyou1314 qq123456 qq12345678 a1234567 a12345678
a123456789 aa123456 aa12345678 abc12345 abc123456 abcd1234 1qaz2wsx 1q2w3e4r qwertyuiop
zxcvbnm123 asdfghjkl 110110110 123456abc 123456aa 123456qq 12345678a woaini123 wang1234
zhang123 li123456 admin123 admin888 password1 p@ssw0rd
""".split()


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    with gzip.open(_LIST, "rt", encoding="utf-8") as handle:
        words = {line.strip() for line in handle if line.strip()}
    return frozenset(words | set(_CHINESE_COMMON))


def _is_run(text: str) -> bool:
    """One character repeated, or a straight run such as 23456789 or 98765432 or abcdefgh."""
    if len(set(text)) == 1:
        return True
    steps = {ord(b) - ord(a) for a, b in zip(text, text[1:])}
    return steps in ({1}, {-1})


def password_problem(password: str | None, *, phone: str | None = None) -> str | None:
    """Why ``password`` may not be used, in words for the person choosing it; None when it is fine."""
    password = password or ""
    if len(password) < MIN_PASSWORD:
        return _("密码至少 %(n)s 位", n=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        return _("密码最多 %(n)s 位", n=MAX_PASSWORD)
    folded = password.strip().lower()
    digits = "".join(ch for ch in password if ch.isdigit())
    if folded in common_passwords() or _is_run(folded):
        return _("这个密码太常见，很容易被猜到，请换一个")
    if phone and len(phone) >= 8 and (phone in digits or phone[-8:] == digits):
        return _("密码不能用手机号")
    return None
