"""Model pools: many models of one task served by one set of replicas (no Ray).

A pool is a ``models:`` entry with ``pool:`` (a directory whose every subdirectory is a
model) and/or ``members:`` (local model directories or Hub ids). A member is served as
``<pool>/<member id>``: its directory name, or its Hub id (``org/name``).

:class:`PoolMembers` answers the one question a replica asks before it loads anything:
is this a member, and where are its files? Anything else is a ``ModelNotFoundError``
(HTTP 404) that loads nothing: names that are not a member, names that are not a single
path component, and directories that resolve outside the pool (``..``, symlinks out).
Members must hold safetensors weights, as single models must.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from serving.errors import ModelNotFoundError
from serving.models import is_local_path

# A directory member's id: one path component, no leading dot (so never `.` or `..`).
DIRECTORY_MEMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A Hub member's id: `org/name`, as the Hub spells it.
HUB_MEMBER = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def member_id(reference: str) -> str:
    """The id an explicit member is served under: a local directory's name, a Hub id."""
    return Path(reference).expanduser().name if is_local_path(reference) else reference


def _has_weights(directory: Path, adapters: bool = False) -> bool:
    if adapters:  # a PEFT adapter: its config and safetensors weights
        return ((directory / "adapter_config.json").is_file()
                and (directory / "adapter_model.safetensors").is_file())
    return (directory / "config.json").is_file() and any(directory.glob("*.safetensors"))


class PoolMembers:
    """The members of one pool: explicit ones, and the subdirectories of its directory.

    The directory is read on every lookup, so a model copied into it is served without a
    restart (as long as its files are complete: write it elsewhere, then move it in).
    """

    def __init__(self, name: str, directory: str | None, members: Iterable[str] = (),
                 adapters: bool = False) -> None:
        self.name = name
        self.adapters = adapters  # members are PEFT adapters of one base model
        self.directory = Path(directory).expanduser().resolve() if directory else None
        self.explicit = {member_id(reference): reference for reference in members}

    def source(self, member: str) -> str:
        """What ``from_pretrained`` loads for ``member``: a directory or a Hub id.

        Raises:
            ModelNotFoundError: ``member`` is not a member of this pool.
        """
        if member in self.explicit:
            reference = self.explicit[member]
            if not is_local_path(reference):
                return reference
            return str(Path(reference).expanduser().resolve())
        found = self._in_directory(member)
        if found is None:
            raise ModelNotFoundError(
                f"{self.name}/{member} is not served: {member!r} is not a member of pool "
                f"{self.name!r} (GET /v1/models lists its members)"
            )
        return str(found)

    def _in_directory(self, member: str) -> Path | None:
        if self.directory is None or not DIRECTORY_MEMBER.fullmatch(member):
            return None
        real = (self.directory / member).resolve()
        # The real path, symlinks followed, must be a direct child of the pool directory.
        if real.parent != self.directory or not _has_weights(real, self.adapters):
            return None
        return real

    def ids(self) -> list[str]:
        """Every member id: the explicit ones, then the directory's, sorted."""
        found = list(self.explicit)
        if self.directory is not None and self.directory.is_dir():
            found += sorted(entry.name for entry in self.directory.iterdir()
                            if entry.name not in self.explicit
                            and self._in_directory(entry.name) is not None)
        return found


def check_pool(name: str, directory: str | None, members: Iterable[str],
               adapters: bool = False) -> None:
    """Raise ``ValueError`` naming the problem when a pool's configuration cannot work."""
    if directory is not None and not Path(directory).expanduser().is_dir():
        raise ValueError(f"pool directory {directory!r} does not exist")
    seen: set[str] = set()
    for reference in members:
        if is_local_path(reference):
            path = Path(reference).expanduser()
            wanted = "adapter_config.json" if adapters else "config.json"
            if not (path / wanted).is_file():
                raise ValueError(f"member {reference!r} is not a "
                                 f"{'PEFT adapter' if adapters else 'model'} directory "
                                 f"(no {wanted})")
        elif not HUB_MEMBER.fullmatch(reference):
            raise ValueError(f"member {reference!r} is neither a local directory nor a "
                             "Hub id like 'org/name'")
        ident = member_id(reference)
        if not (DIRECTORY_MEMBER.fullmatch(ident) or HUB_MEMBER.fullmatch(ident)):
            raise ValueError(f"member {reference!r}: its id {ident!r} is not URL-safe")
        if ident in seen:
            raise ValueError(f"two members of pool {name!r} are called {ident!r}")
        seen.add(ident)


# Distinct pool members one process labels metrics with; the rest share OTHER_MEMBERS.
MEMBER_LABELS = 64
OTHER_MEMBERS = "_other"


class MemberLabels:
    """Metric label values for pool members: the first ``limit`` members a process sees
    keep their id, later ones share ``_other``, so a pool of thousands of members adds at
    most ``limit + 1`` series per metric and process."""

    def __init__(self, limit: int = MEMBER_LABELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, member: str) -> str:
        if member in self._seen:
            return member
        if len(self._seen) < self.limit:
            self._seen.add(member)
            return member
        return OTHER_MEMBERS
