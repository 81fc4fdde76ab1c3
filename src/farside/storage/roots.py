"""LUN roots: the directories under which a pool's LUNs may live (docs/storage.md, "LUN roots").

Every LUN path that enters the pool (SR.create, SR.probe, PBD.create and plug, DR_task.create, a
DR run's LUNs) is checked here: absolute, no ``..``, no symlink anywhere along it (the path must be
its own real path, so a link cannot lead a pool-operator's SR into /etc), and inside one of the
pool's roots. The roots themselves are real directories that are not the host's system trees.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from farside.errors import InvalidValue

# The host's own trees: no LUN root, LUN or mirror target may be one of them or lie inside one.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                "/sys", "/usr")  # fmt: skip
# Top-level directories that may hold LUNs below them but are too wide to be a root or a LUN themselves.
TOO_WIDE = ("/", "/home", "/mnt", "/media", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp")


def _under(path: PurePosixPath, tree: str) -> bool:
    return path == PurePosixPath(tree) or PurePosixPath(tree) in path.parents


def system_dir(path: str | PurePosixPath) -> str | None:
    """Why ``path`` (absolute, normalised) must never be a LUN, a root or a mirror target; None if it may."""
    p = PurePosixPath(path)
    for tree in SYSTEM_TREES:
        if _under(p, tree):
            return f"it is in the host's system tree {tree}"
    if str(p) in TOO_WIDE:
        return "it is a top-level directory of the host; use a directory below it"
    return None


def _plain(path: str | Path, what: str) -> PurePosixPath:
    """``path`` if it is absolute, has no ``..``, leads through no symlink and is no system
    directory; ValueError otherwise."""
    text = str(path)
    if not text.startswith("/"):
        raise ValueError(f"{text!r}: {what} must be an absolute path")
    p = PurePosixPath(text)
    if ".." in p.parts:
        raise ValueError(f"{text}: {what} must not contain '..'")
    real = os.path.realpath(p)
    if real != str(p):
        raise ValueError(f"{text}: {what} must not be or lie under a symlink (it leads to {real})")
    why = system_dir(p)
    if why:
        raise ValueError(f"{p}: not {what}: {why}")
    return p


def check_root(path: str | Path) -> Path:
    """A directory an operator names as a LUN root, checked: an existing real directory that is
    not a system directory. INVALID_VALUE otherwise."""
    try:
        p = _plain(path, "a LUN root")
    except ValueError as exc:
        raise InvalidValue("lun_roots", str(exc)) from None
    if not Path(p).is_dir():
        raise InvalidValue("lun_roots", f"{p}: a LUN root must be an existing directory; create it first")
    return Path(p)


def check_roots(paths: Iterable[str | Path]) -> list[str]:
    """Roots as the pool stores them: each checked, in order, without repeats."""
    return list(dict.fromkeys(str(check_root(p)) for p in paths))


def describe(roots: Sequence[str]) -> str:
    if not roots:
        return "this pool has no LUN roots yet: a pool-admin sets them (farside init --lun-root, or pool.set_lun_roots)"
    return f"the pool's LUN roots are {', '.join(roots)}"


def check_plain(path: str | Path, what: str) -> Path:
    """``path`` if it is absolute, has no ``..``, leads through no symlink and is no system
    directory (where no pool's roots are known, as for a mirror's target); INVALID_VALUE otherwise."""
    try:
        return Path(_plain(path, what))
    except ValueError as exc:
        raise InvalidValue("path", str(exc)) from None


def check_lun(path: str | Path, roots: Sequence[str]) -> Path:
    """A LUN path (or a directory of LUNs) that may enter the pool: INVALID_VALUE, naming the
    roots, unless it is a plain path (see ``_plain``) at or below one of ``roots``."""
    try:
        p = _plain(path, "a LUN")
    except ValueError as exc:
        raise InvalidValue("path", f"{exc}; {describe(roots)}") from None
    if not any(_under(p, root) for root in roots):
        raise InvalidValue("path", f"{p} is outside the LUN roots: {describe(roots)}")
    return Path(p)
