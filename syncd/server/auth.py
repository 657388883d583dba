"""Bearer tokens of `syncd serve`: where they come from and what each may do.

Tokens come from the process environment (`SYNCD_SERVE_TOKENS` read-write,
`SYNCD_SERVE_READ_TOKENS` read-only; comma-separated) or from a file only its owner can read
(one token a line, optionally followed by `read-only` or `read-write`; `#` starts a comment).
Only their SHA-256 digests are kept, compared in constant time; a token is never logged, and
no message quotes one.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import InputError
from ..wire import READ_ONLY, READ_WRITE
from .errors import ApiError

TOKENS_VAR = "SYNCD_SERVE_TOKENS"
READ_TOKENS_VAR = "SYNCD_SERVE_READ_TOKENS"
MIN_LENGTH = 16  # shorter tokens are guessable; refusing them is cheaper than a breach
_VISIBLE = ("!", "~")  # the printable ASCII range, space excluded


@dataclass(frozen=True)
class Caller:
    id: str  # a short digest prefix: tells callers apart (idempotency keys) without the token
    access: str  # read-write | read-only


class Tokens:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        """`tokens`: token → access. Kept only as digests."""
        self._digests = [(_digest(token), access) for token, access in tokens.items()]

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def read_only(self) -> int:
        return sum(1 for _, access in self._digests if access == READ_ONLY)

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's Authorization header names, or 401."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
        given = _digest(token.strip())
        found = None
        for digest, access in self._digests:  # no early exit: time does not tell which matched
            if hmac.compare_digest(given, digest):
                found = Caller(given.hex()[:16], access)
        if found is None:
            raise _unauthorized("invalid token")
        return found


def require_write(caller: Caller) -> None:
    if caller.access != READ_WRITE:
        raise ApiError(403, "this token is read-only")


def load_tokens(environ: Mapping[str, str], tokens_file: Path | None, *,
                read_only: bool = False) -> Tokens:
    """Tokens from the environment and the file; a read-only server makes every one read-only."""
    found: dict[str, str] = {}
    for var, access in ((TOKENS_VAR, READ_WRITE), (READ_TOKENS_VAR, READ_ONLY)):
        for token in environ.get(var, "").split(","):
            if token.strip():
                found[_checked(token.strip(), f"${var}")] = access
    if tokens_file is not None:
        found.update(_from_file(tokens_file))
    if not found:
        raise InputError(f"no tokens: set {TOKENS_VAR} (read-write) or {READ_TOKENS_VAR} "
                         "(read-only), or pass --tokens-file")
    if read_only:
        found = dict.fromkeys(found, READ_ONLY)
    return Tokens(found)


def _from_file(path: Path) -> dict[str, str]:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"tokens file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"tokens file {path}: not UTF-8 text") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or info.st_uid != os.getuid():
        raise InputError(f"tokens file {path}: must belong to you and be readable by you only "
                         f"(mode {stat.filemode(info.st_mode)}; chmod 600 it)")
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        access = words[1] if len(words) > 1 else READ_WRITE
        if len(words) > 2 or access not in (READ_WRITE, READ_ONLY):
            raise InputError(f"tokens file {path}, line {number}: expected TOKEN "
                             f"[{READ_WRITE}|{READ_ONLY}]")
        found[_checked(words[0], f"tokens file {path}, line {number}")] = access
    return found


def _checked(token: str, where: str) -> str:
    """The token, or an error naming where it came from (never the token itself)."""
    if len(token) < MIN_LENGTH:
        raise InputError(f"{where}: a token needs at least {MIN_LENGTH} characters")
    # An Authorization header carries only visible ASCII: any other token could never be
    # presented (or would be, mangled, by some clients and not others), so it is refused here.
    if not all(_VISIBLE[0] <= char <= _VISIBLE[1] for char in token):
        raise InputError(f"{where}: a token must be printable ASCII (letters, digits, "
                         "punctuation; no spaces or control characters)")
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": 'Bearer realm="syncd"'})
