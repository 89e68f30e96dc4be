"""CHAP settings and auth groups (user/secret pairs, with the mutual ones).

A target node, portal group or the discovery session says whether CHAP is disabled,
required, mutual, and which auth group holds the secrets. With neither disabled nor
required, the initiator chooses (CHAP when it offers it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from spydk.iscsi.chap import ChapCredentials

MAX_SECRETS = 64
MAX_NAME = 255
MAX_SECRET = 255


class AuthError(ValueError):
    """Bad CHAP settings or secrets (the message names the field)."""


@dataclass(frozen=True)
class ChapSettings:
    disable: bool = False
    require: bool = False
    mutual: bool = False
    group: int = 0

    @classmethod
    def make(cls, disable: bool = False, require: bool = False, mutual: bool = False,
             group: int = 0) -> ChapSettings:
        if disable and require:
            raise AuthError("disable_chap and require_chap are mutually exclusive")
        if mutual and not require:
            raise AuthError("mutual_chap needs require_chap")
        if group < 0:
            raise AuthError(f"chap_group must be >= 0 (0 = none), got {group}")
        return cls(disable, require, mutual, group)

    def to_json(self) -> dict[str, object]:
        return {"disable_chap": self.disable, "require_chap": self.require,
                "mutual_chap": self.mutual, "chap_group": self.group}


@dataclass(frozen=True)
class AuthSecret:
    user: str
    secret: str
    muser: str = ""
    msecret: str = ""

    def credentials(self) -> ChapCredentials:
        return ChapCredentials(self.user, self.secret.encode(), self.muser, self.msecret.encode())

    def to_json(self) -> dict[str, str]:
        d = {"user": self.user, "secret": self.secret}
        if self.muser:
            d["muser"] = self.muser
            d["msecret"] = self.msecret
        return d


def make_secret(user: str, secret: str, muser: str | None = None,
                msecret: str | None = None) -> AuthSecret:
    if not user or len(user) > MAX_NAME:
        raise AuthError(f"user must be 1..{MAX_NAME} characters")
    if not secret or len(secret) > MAX_SECRET:
        raise AuthError(f"secret must be 1..{MAX_SECRET} characters")
    if bool(muser) != bool(msecret):
        raise AuthError("muser and msecret go together")
    if muser and (len(muser) > MAX_NAME or len(msecret or "") > MAX_SECRET):
        raise AuthError(f"muser/msecret must be at most {MAX_NAME} characters")
    return AuthSecret(user, secret, muser or "", msecret or "")


@dataclass
class AuthGroup:
    tag: int
    secrets: list[AuthSecret] = field(default_factory=list)

    def find(self, user: str) -> AuthSecret | None:
        for s in self.secrets:
            if s.user == user:
                return s
        return None

    def add(self, s: AuthSecret) -> None:
        if self.find(s.user) is not None:
            raise AuthError(f"user {s.user!r} already exists in auth group {self.tag}")
        if len(self.secrets) >= MAX_SECRETS:
            raise AuthError(f"an auth group holds at most {MAX_SECRETS} secrets")
        self.secrets.append(s)

    def remove(self, user: str) -> None:
        s = self.find(user)
        if s is None:
            raise AuthError(f"user {user!r} is not in auth group {self.tag}")
        self.secrets.remove(s)

    def to_json(self) -> dict[str, object]:
        return {"tag": self.tag, "secrets": [s.to_json() for s in self.secrets]}
