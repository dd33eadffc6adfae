"""Who may touch which files: the one place that decides whether a path typed into the studio may be read or written.

- The *operator* (the CLI, or a studio on a loopback address without ``--share``) may name any folder, as in a
  shell of their own. Relative paths start at the current folder.
- A *remote user* (anyone whose browser reaches a studio started with ``--share`` or on a non-loopback host) may
  read and write only under the *roots*: the workspace (read-write), the folders the operator named with
  ``--data-dir DIR`` (read-only) or ``--data-dir DIR:rw`` (read-write), and the examples the studio ships
  (read-only). Relative paths start in the workspace. Paths are resolved with symbolic links followed, so a link
  inside a root cannot lead out of it.
- The shipped examples (demo datasets, the toy-world model) are read-only for everyone who uses the studio.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from studio.util.paths import repo_root

SHIPPED_ROOT = repo_root() / "assets"
MAX_PATH_CHARS = 4096


class AccessError(ValueError):
    """A path the studio will not read or write for this user; the message says what to do instead."""


@dataclass(frozen=True)
class Root:
    """A folder remote users may reach: ``path`` is resolved; ``label`` names it in messages."""

    path: Path
    writable: bool
    label: str
    kind: str = "--data-dir"  # "workspace", "--data-dir" or "shipped examples": how the page lists it

    def holds(self, resolved: Path) -> bool:
        return resolved == self.path or resolved.is_relative_to(self.path)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_data_dir(text: str) -> Root:
    """``DIR`` (read-only) or ``DIR:rw`` / ``DIR:ro`` from ``--data-dir``; the folder must exist."""
    text = (text or "").strip()
    writable = text.endswith(":rw")
    if text.endswith((":rw", ":ro")):
        text = text[:-3]
    if not text:
        raise AccessError("--data-dir takes a folder, e.g. --data-dir /data/pictures or --data-dir /data/out:rw")
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise AccessError(f"--data-dir {text}: no such folder; create it or fix the path")
    return Root(Path(os.path.realpath(folder)), writable, f"--data-dir {folder}")


@dataclass(frozen=True)
class Access:
    """The access rules of one studio process (see the module's docstring)."""

    remote: bool
    roots: tuple[Root, ...]
    base: Path | None = None  # where relative paths start; None: the current folder at the time of asking

    @classmethod
    def for_operator(cls, workspace: str | os.PathLike) -> "Access":
        return cls(False, _standard_roots(workspace, ()))

    @classmethod
    def for_remote(cls, workspace: str | os.PathLike, data_dirs: tuple[Root, ...] = ()) -> "Access":
        workspace = Path(os.path.realpath(Path(workspace).expanduser()))
        return cls(True, _standard_roots(workspace, data_dirs), workspace)

    def start(self) -> Path:
        """The folder relative paths start from."""
        return self.base if self.base is not None else Path.cwd()

    def resolve(self, text: str | os.PathLike, *, write: bool = False, what: str = "the path") -> Path:
        """The absolute path ``text`` names, if this user may read it (``write``: write it); else AccessError.

        For the operator the path is returned as typed (made absolute), except that the shipped examples stay
        read-only. For a remote user it is resolved with links followed and must lie under a root.
        """
        raw = str(text).strip()
        if not raw:
            raise AccessError(f"{what} is empty; type a path")
        if len(raw) > MAX_PATH_CHARS or "\x00" in raw:
            raise AccessError(f"{what} is not a usable path (too long, or it holds a NUL character)")
        path = Path(raw).expanduser() if not self.remote else Path(raw)
        absolute = path if path.is_absolute() else self.start() / path
        resolved = Path(os.path.realpath(absolute))
        shipped = self._shipped()
        if write and shipped is not None and shipped.holds(resolved):
            raise AccessError(f"{what} {raw!r} is inside the examples that ship with the studio, which stay "
                              "read-only; copy them into the workspace (or another folder) and work on the copy")
        if not self.remote:
            return absolute
        return self._confined(raw, resolved, write, what)

    def allows(self, path: str | os.PathLike, write: bool = False) -> bool:
        try:
            self.resolve(path, write=write)
        except AccessError:
            return False
        return True

    def describe(self) -> list[str]:
        """One line per root: what a remote user can reach ("" for the operator, who can reach everything)."""
        return [f"{root.path} ({root.kind}, {'read-write' if root.writable else 'read-only'})"
                for root in self.roots] if self.remote else []

    def _confined(self, raw: str, resolved: Path, write: bool, what: str) -> Path:
        holders = [root for root in self.roots if root.holds(resolved)]
        if not holders:
            names = ", ".join(root.label for root in self.roots)
            raise AccessError(f"{what} {raw!r} is outside the folders this studio shares ({names}); upload the "
                              "files as a zip in the Dataset tab, or ask whoever started the studio to add the "
                              "folder with --data-dir")
        if write and not any(root.writable for root in holders):
            raise AccessError(f"{what} {raw!r} is in {holders[0].label}, which is read-only here; choose a folder "
                              "in the workspace (or ask whoever started the studio for --data-dir DIR:rw)")
        return resolved

    def _shipped(self) -> Root | None:
        return next((root for root in self.roots if root.path == _shipped_path()), None)


def _shipped_path() -> Path:
    return Path(os.path.realpath(SHIPPED_ROOT))


def _standard_roots(workspace: str | os.PathLike, data_dirs: tuple[Root, ...]) -> tuple[Root, ...]:
    workspace = Path(os.path.realpath(Path(workspace).expanduser()))
    return (Root(workspace, True, "the workspace", "workspace"), *data_dirs,
            Root(_shipped_path(), False, "the studio's shipped examples", "shipped examples"))
