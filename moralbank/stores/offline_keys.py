"""The village's signing key for offline vouchers, and the voucher token it signs.

ECDSA P-256 with SHA-256 (JOSE ``ES256``): WebCrypto verifies it in every current browser
(Ed25519 is not everywhere yet). A token is ``MB1.<payload>.<signature>``, both base64url; the
payload is compact JSON ``{"v": voucher, "h": household, "s": store, "p": points, "e": expiry
(unix seconds), "k": village code}`` and the signature is the raw ``r‖s`` (64 bytes) WebCrypto
expects. ECDSA signs with fresh randomness, so the server signs a voucher again whenever it shows
it: every signature of the same payload is the same voucher, and the token is stored nowhere.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from ..database import utcnow
from ..extensions import db
from .offline_models import OfflineKey

ALG = "ES256"
PREFIX = "MB1"
#: longest token accepted (a payload of a few integers and a 64-byte signature fit in ~250)
MAX_TOKEN = 600


class BadToken(ValueError):
    """Not a voucher token of this village's key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _passphrase() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    return hashlib.sha256(f"moralbank-offline-key:{secret}".encode()).digest()


def _new_key_row(village_id: int) -> dict:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
           "y": _b64(numbers.y.to_bytes(32, "big"))}
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(_passphrase())).decode()
    return {"village_id": village_id, "alg": ALG, "public_jwk": json.dumps(jwk, separators=(",", ":")),
            "private_pem": pem, "created_at": utcnow()}


def village_key(village_id: int, *, create: bool = True) -> OfflineKey | None:
    """The village's key; made on first need (two racing makers keep the first one written)."""
    key = db.session.scalar(select(OfflineKey).where(OfflineKey.village_id == village_id))
    if key is not None or not create:
        return key
    dialect = db.session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(OfflineKey.__table__).values(**_new_key_row(village_id)).on_conflict_do_nothing())
    return db.session.scalar(select(OfflineKey).where(OfflineKey.village_id == village_id))


def public_jwk(key: OfflineKey) -> dict:
    return json.loads(key.public_jwk)


def public_pem(key: OfflineKey) -> str:
    return _public(key).public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _public(key: OfflineKey) -> ec.EllipticCurvePublicKey:
    jwk = public_jwk(key)
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(_unb64(jwk["x"]), "big"),
                                            int.from_bytes(_unb64(jwk["y"]), "big"), ec.SECP256R1())
    return numbers.public_key()


def sign(key: OfflineKey, payload: dict) -> str:
    """A token carrying ``payload``, signed with the village's private key."""
    private = serialization.load_pem_private_key(key.private_pem.encode(), password=_passphrase())
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{body}".encode()
    r, s = decode_dss_signature(private.sign(signed, ec.ECDSA(hashes.SHA256())))
    return f"{PREFIX}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def verify(key: OfflineKey, token: str) -> dict:
    """The payload of a token signed by ``key``; ``BadToken`` otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise BadToken("not a token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise BadToken("not a voucher token")
    try:
        raw = _unb64(parts[2])
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadToken("undecodable") from error
    if len(raw) != 64 or not isinstance(payload, dict):
        raise BadToken("malformed")
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        _public(key).verify(signature, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise BadToken("bad signature") from error
    if not all(isinstance(payload.get(name), int) and not isinstance(payload.get(name), bool)
               for name in ("v", "h", "s", "p", "e")):
        raise BadToken("incomplete payload")
    return payload


def unsigned_payload(token: str) -> dict | None:
    """The payload of a token without checking it (to find which village's key to check it with)."""
    try:
        payload = json.loads(_unb64(token.split(".")[1]))
    except (ValueError, IndexError, UnicodeDecodeError, AttributeError):
        return None
    return payload if isinstance(payload, dict) else None


def expiry_seconds(moment: datetime) -> int:
    """Unix seconds of an aware timestamp (the token's ``e``)."""
    return int(moment.timestamp())
