"""Ed25519 signatures over domain-separated BLAKE2b statements (PROTOCOL.md section 1).

Every signature covers BLAKE2b(tag || cluster_id || epoch || fields). ``statement`` builds
that digest; a verifier rebuilds it from what it expects, so a signature can never be replayed
under another tag, cluster, epoch, sender or index.
"""

from __future__ import annotations

import hashlib
import struct
from enum import Enum

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

DIGEST_BYTES = 32
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

_blake2b = hashlib.blake2b
_Q = struct.Struct(">Q")


class Tag(bytes, Enum):
    """The complete list of statements anyone in ubft signs."""

    LINK = b"ubft/link"
    CTB = b"ubft/ctb"
    CTB_CKPT = b"ubft/ctbckpt"
    PREP = b"ubft/prep"
    CKPT = b"ubft/ckpt"
    STATE = b"ubft/state"
    REQ = b"ubft/req"
    RECONF = b"ubft/reconf"
    CLIENT = b"ubft/client"
    PROVISION = b"ubft/provision"


def digest(data: bytes) -> bytes:
    """BLAKE2b-256 of ``data``."""
    return _blake2b(data, digest_size=DIGEST_BYTES).digest()


def statement(tag: Tag, cluster_id: bytes, epoch: int | None, *fields: int | bytes) -> bytes:
    """The 32-byte digest a signature covers. ``epoch`` is None only for "req"."""
    h = _blake2b(digest_size=DIGEST_BYTES)
    h.update(tag.value)
    h.update(_Q.pack(len(cluster_id)))
    h.update(cluster_id)
    if epoch is not None:
        h.update(_Q.pack(epoch))
    for field in fields:
        if isinstance(field, int):
            h.update(b"i")
            h.update(_Q.pack(field))
        else:
            h.update(b"b")
            h.update(_Q.pack(len(field)))
            h.update(field)
    return h.digest()


def public_key_is_valid(key: bytes) -> bool:
    """A 32-byte Ed25519 public key that decodes to a usable curve point."""
    if len(key) != PUBLIC_KEY_BYTES:
        return False
    try:
        crypto_sign_ed25519_pk_to_curve25519(key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


class SignatureCounter:
    """Counts signatures made (by tag) and checked, for the simulator's and benchmark's figures."""

    __slots__ = ("created", "created_by_tag", "verified")

    def __init__(self) -> None:
        self.created = 0
        self.created_by_tag: dict[Tag, int] = {}
        self.verified = 0

    def on_path(self) -> int:
        """Signatures on the way to decisions; checkpoint certificates are counted apart."""
        return self.created - self.off_path()

    def off_path(self) -> int:
        by = self.created_by_tag
        return by.get(Tag.CKPT, 0) + by.get(Tag.CTB_CKPT, 0)


class Signer:
    """Holds one Ed25519 secret key; signs statements only."""

    __slots__ = ("_key", "counter", "public_key")

    def __init__(self, seed: bytes, counter: SignatureCounter | None = None) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.counter = counter if counter is not None else SignatureCounter()

    def sign(self, tag: Tag, cluster_id: bytes, epoch: int | None, *fields: int | bytes) -> bytes:
        """Sign the statement (tag, cluster, epoch, fields); see ``statement``."""
        counter = self.counter
        counter.created += 1
        counter.created_by_tag[tag] = counter.created_by_tag.get(tag, 0) + 1
        return self._key.sign(statement(tag, cluster_id, epoch, *fields)).signature


class Verifier:
    """Checks signatures against a fixed table of public keys (member id -> key)."""

    __slots__ = ("_keys", "counter")

    def __init__(self, keys: dict[int, bytes], counter: SignatureCounter | None = None) -> None:
        self._keys = {ident: VerifyKey(key) for ident, key in keys.items()}
        self.counter = counter if counter is not None else SignatureCounter()

    def knows(self, ident: int) -> bool:
        return ident in self._keys

    def verify(self, ident: int, stmt: bytes, sig: bytes) -> bool:
        """True iff ``sig`` is ``ident``'s valid signature on ``stmt``; never raises."""
        key = self._keys.get(ident)
        if key is None or len(sig) != SIGNATURE_BYTES:
            return False
        self.counter.verified += 1
        try:
            key.verify(stmt, sig)
        except (BadSignatureError, CryptoError, ValueError):
            return False
        return True


def verify_with_key(public_key: bytes, stmt: bytes, sig: bytes, counter: SignatureCounter) -> bool:
    """Check one signature under a key that is not in a table (a client's, the admin's)."""
    if len(sig) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    counter.verified += 1
    try:
        VerifyKey(public_key).verify(stmt, sig)
    except (BadSignatureError, CryptoError, ValueError):
        return False
    return True
