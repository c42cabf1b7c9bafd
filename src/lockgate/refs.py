"""References that look alike everywhere: ``models:/fraud/3``, ``models:/fraud@champion``,
``runs:/<id>``, ``datasets:/transactions@<hash>``.

>>> parse_ref("models:/fraud@champion")
ModelRef(name='fraud', version=None, alias='champion')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockgate.errors import InvalidReferenceError

__all__ = [
    "ALIAS_PATTERN",
    "NAME_PATTERN",
    "DatasetRef",
    "ModelRef",
    "Ref",
    "RunRef",
    "is_valid_alias",
    "is_valid_name",
    "parse_model_ref",
    "parse_ref",
]

# One spelling of names (models, datasets) and aliases, so every name can be referenced.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}"
ALIAS_PATTERN = r"[A-Za-z][A-Za-z0-9_\-]{0,127}"
_NAME = NAME_PATTERN
# Matched with fullmatch: ``$`` would also accept a trailing newline ("models:/fraud/1\n").
_MODEL = re.compile(rf"models:/(?P<name>{_NAME})(?:/(?P<version>\d+)|@(?P<alias>{ALIAS_PATTERN}))")
_NAME_RE = re.compile(NAME_PATTERN)
_ALIAS_RE = re.compile(ALIAS_PATTERN)


def is_valid_name(name: object) -> bool:
    """Whether ``name`` can name a model or a data set (and so appear in a reference)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def is_valid_alias(alias: object) -> bool:
    return isinstance(alias, str) and _ALIAS_RE.fullmatch(alias) is not None


_RUN = re.compile(r"runs:/(?P<id>[0-9a-f]{4,32})")
_DATASET = re.compile(rf"datasets:/(?P<name>{_NAME})(?:@(?P<hash>[0-9a-f]{{4,64}}|latest))?")
_FEATURE = re.compile(r"features:/(?P<name>[A-Za-z_][A-Za-z0-9_]{0,127})(?:@(?P<version>[0-9a-f]{4,64}))?")


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return (
            f"models:/{self.name}/{self.version}" if self.version is not None else f"models:/{self.name}@{self.alias}"
        )


@dataclass(frozen=True, slots=True)
class RunRef:
    id: str

    def __str__(self) -> str:
        return f"runs:/{self.id}"


@dataclass(frozen=True, slots=True)
class DatasetRef:
    name: str
    hash: str | None = None

    def __str__(self) -> str:
        return f"datasets:/{self.name}" + (f"@{self.hash}" if self.hash else "")


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """A feature store definition (view, on-demand feature or service): its current version,
    or the version whose hash starts with ``version``."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"features:/{self.name}" + (f"@{self.version}" if self.version else "")


Ref = ModelRef | RunRef | DatasetRef | FeatureRef

_EXAMPLES = (
    "models:/fraud/3, models:/fraud@champion, runs:/<id>, datasets:/transactions@<hash> or features:/card_aggregates"
)


def parse_ref(text: str) -> Ref:
    """Parse any lockgate reference, with one clear error for anything else."""
    if text.startswith("models:/"):
        return parse_model_ref(text)
    if m := _RUN.fullmatch(text):
        return RunRef(m.group("id"))
    if m := _DATASET.fullmatch(text):
        return DatasetRef(m.group("name"), m.group("hash"))
    if m := _FEATURE.fullmatch(text):
        return FeatureRef(m.group("name"), m.group("version"))
    raise InvalidReferenceError(f"{text!r} is not a lockgate reference; use one of {_EXAMPLES}")


def parse_model_ref(text: str) -> ModelRef:
    """Parse ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.

    >>> parse_model_ref("models:/fraud/3")
    ModelRef(name='fraud', version=3, alias=None)
    """
    m = _MODEL.fullmatch(text)
    if m is None:
        raise InvalidReferenceError(
            f"{text!r} is not a model reference; use models:/NAME/VERSION or models:/NAME@ALIAS"
            " (for example models:/fraud/3 or models:/fraud@champion)"
        )
    version = m.group("version")
    return ModelRef(m.group("name"), int(version) if version else None, m.group("alias"))
