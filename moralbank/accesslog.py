"""gunicorn's access log without the secrets some URLs carry.

A payment code's QR opens ``/shop/redeem?t=TOKEN``, a paper card's ``/shop/card?t=TOKEN``, the
resident's page polls ``/me/pay/status/CODE``: in an access log (request line, Referer) those
are live credentials for whoever reads the log. :class:`TokenMaskingLogger` writes them as
``***`` (see :func:`moralbank.edge.mask_tokens`). ``gunicorn.conf.py`` makes it gunicorn's logger.
"""
from __future__ import annotations

from gunicorn.glogging import Logger

from .edge import mask_tokens

#: atoms holding only the query string (no "?" for the masks to anchor on)
_QUERY_ATOMS = ("q", "{query_string}e")


class TokenMaskingLogger(Logger):
    """gunicorn's logger; every text atom of an access-log line has its tokens masked."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if not isinstance(value, str) or name == "t":
                continue
            if name in _QUERY_ATOMS:
                atoms[name] = mask_tokens("?" + value)[1:]
            else:
                atoms[name] = mask_tokens(value)
        return atoms
