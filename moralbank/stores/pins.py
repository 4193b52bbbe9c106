"""Which PINs a paper card may have.

A card's PIN is all that stands between a found or copied card and the household's
points (five wrong tries lock it), so the PINs people guess first are refused:
one digit repeated (1111), a short block repeated (1212, 123123), a straight run up
or down (1234, 9876), a line on the keypad (2580, 0852, 1470, 3690, 147258…), a
year (19xx, 20xx) and the tail of a household member's phone number.
"""
from __future__ import annotations

from flask_babel import gettext as _

from ..errors import Invalid

#: a phone keypad (1 2 3 / 4 5 6 / 7 8 9 / 0) walked in straight lines, one way; reversed below
_WALKS = ("0123456789", "1470", "2580", "3690", "147258369", "1472583690", "789456123", "7894561230",
          "159", "357")
KEYPAD_WALKS = _WALKS + tuple(walk[::-1] for walk in _WALKS)


def _weakness(pin: str, phones: list[str]) -> str | None:
    """Why ``pin`` is easy to guess, or None."""
    length = len(pin)
    for unit in range(1, length // 2 + 1):
        if length % unit == 0 and pin == pin[:unit] * (length // unit):
            return _("不能是同一个数字或同一组数字的重复")
    if any(pin in walk for walk in KEYPAD_WALKS):
        return _("不能是连续的数字或键盘上的一条线")
    if length == 4 and pin[:2] in ("19", "20"):
        return _("不能是年份")
    if any(phone.endswith(pin) for phone in phones):
        return _("不能是家里人手机号的后几位")
    return None


def check_pin(pin: str, phones: list[str] = ()) -> None:
    """Refuse a card PIN that is not 4 to 8 digits or is easy to guess (see the module docstring).

    ``phones`` are the household's phone numbers (digits); a PIN their tail ends with is refused.
    """
    if not (pin or "").isascii() or not pin.isdigit() or not 4 <= len(pin) <= 8:
        raise Invalid(_("密码应为 4 到 8 位数字"), fields={"pin": [_("4 到 8 位数字")]})
    digits = ["".join(ch for ch in phone if ch.isdigit()) for phone in phones if phone]
    reason = _weakness(pin, digits)
    if reason:
        raise Invalid(_("密码太简单，请换一个：%(reason)s", reason=reason), fields={"pin": [_("太简单")]})
