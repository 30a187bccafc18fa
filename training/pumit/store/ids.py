"""Model ids ``name-vX.Y.Z``: parsing, validation and semantic-version ordering.

A model id is a *name* and a *semantic version* joined by ``-v``, e.g. ``knee-seg-v1.2.0``. Names are
lower case (ids are case-insensitive: ``Knee-V1.0.0`` is read as ``knee-v1.0.0``, so that two ids
never differ only by case, which case-insensitive file systems could not store side by side), start
with a letter or digit, and may contain letters, digits, ``.``, ``_`` and ``-`` (at most 64 chars).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from pumit.errors import InputError

#: Longest allowed model name.
MAX_NAME_LENGTH = 64

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_VERSION_RE = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_ID_RE = re.compile(r"(?P<name>[a-z0-9][a-z0-9._-]*?)-v(?P<version>(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*))")

ID_HELP = "model ids look like NAME-vX.Y.Z, e.g. knee-seg-v1.0.0 (NAME: lower-case letters, digits, '.', '_', '-')"


@total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version ``major.minor.patch`` (ordered numerically)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``X.Y.Z`` (an optional leading ``v`` is accepted); raises :class:`InputError`."""
        m = _VERSION_RE.fullmatch(str(text).strip().lower())
        if m is None:
            raise InputError(f"malformed version {text!r}: expected a semantic version X.Y.Z such as 1.0.0")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def bump_patch(self) -> Version:
        """The next patch version (``1.2.3`` → ``1.2.4``)."""
        return Version(self.major, self.minor, self.patch + 1)

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@total_ordering
@dataclass(frozen=True)
class ModelId:
    """A parsed model id: ``name`` and ``version``; ``str(model_id)`` is ``name-vX.Y.Z``."""

    name: str
    version: Version

    @classmethod
    def parse(cls, text: str) -> ModelId:
        """Parse a full id ``name-vX.Y.Z``; raises :class:`InputError` naming the expected form."""
        s = str(text).strip().lower()
        m = _ID_RE.fullmatch(s)
        if m is None:
            raise InputError(f"malformed model id {text!r}: {ID_HELP}")
        return cls(validate_name(m.group("name")), Version.parse(m.group("version")))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ModelId):
            return NotImplemented
        return (self.name, self.version) < (other.name, other.version)

    def __str__(self) -> str:
        return f"{self.name}-v{self.version}"


def validate_name(name: str) -> str:
    """Return the normalized (lower-case) model name, or raise :class:`InputError` if malformed.

    A name must not itself end in ``-vX.Y.Z`` (it would be read as an id).
    """
    n = str(name).strip().lower()
    if not n or len(n) > MAX_NAME_LENGTH or _NAME_RE.fullmatch(n) is None:
        raise InputError(
            f"malformed model name {name!r}: use 1-{MAX_NAME_LENGTH} lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if _ID_RE.fullmatch(n):
        raise InputError(f"model name {name!r} already ends in a version; give the name without -vX.Y.Z")
    return n


def slugify_name(text: str) -> str | None:
    """Turn free text such as ``"Knee MRI Segmentation"`` into a valid name (``knee-mri-segmentation``).

    Returns ``None`` when nothing usable is left.
    """
    s = re.sub(r"[^a-z0-9._]+", "-", str(text).strip().lower()).strip("-._")[:MAX_NAME_LENGTH].strip("-._")
    if not s:
        return None
    if _ID_RE.fullmatch(s):  # "foo-v1.0.0" as a meta name: keep only the name part
        s = _ID_RE.fullmatch(s).group("name")  # type: ignore[union-attr]
    try:
        return validate_name(s)
    except InputError:
        return None


def is_full_id(text: str) -> bool:
    """Whether ``text`` is a well-formed full id ``name-vX.Y.Z`` (case-insensitive)."""
    return _ID_RE.fullmatch(str(text).strip().lower()) is not None


def parse_id_or_name(text: str) -> tuple[str, Version | None]:
    """Parse a full id (→ ``(name, version)``) or a bare name (→ ``(name, None)`` = latest version).

    Raises :class:`InputError` if ``text`` is neither.
    """
    s = str(text).strip()
    if is_full_id(s):
        mid = ModelId.parse(s)
        return mid.name, mid.version
    try:
        return validate_name(s), None
    except InputError:
        raise InputError(f"malformed model id {text!r}: {ID_HELP}, or a bare NAME for its latest version") from None
