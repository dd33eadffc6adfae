"""Reading a user's file with a size cap: only regular files, never more than the cap, whatever the file claims.

A path a user types can name ``/dev/zero`` (endless), a named pipe (blocks until someone writes), a socket, a
folder, a link that loops back on itself, or a file of many gigabytes. :func:`read_bytes_capped` refuses each of
these with :class:`FileRefused`, a sentence that names the file and says what to do; callers turn it into their
own error type. A missing file still raises ``FileNotFoundError`` and other I/O failures ``OSError``, as
``open`` does, so callers keep their own wording for those.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_CHUNK = 1 << 20
LINK_LOOP = "is a link that leads back to itself (a symlink loop)"
_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISSOCK, "a socket"))


class FileRefused(ValueError):
    """A file that was not read (a folder, a device, a pipe, a link loop, or larger than its cap).

    ``reason`` is the sentence without the file name; ``str(error)`` is ``"<path>: <reason>"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


def size_text(size: int) -> str:
    """``33554432`` -> ``32 MiB``; ``1500`` -> ``1.5 kB``: sizes for messages."""
    if size >= 1 << 20:
        return f"{size / (1 << 20):g} MiB"
    return f"{size / 1000:g} kB"


def read_bytes_capped(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``limit`` bytes; otherwise :class:`FileRefused`.

    ``what`` names the kind of file in the messages and takes the article "a" (``"caption file"``,
    ``"config file"``, ``"picture"``). At most ``limit + 1`` bytes are read: the size the file system reports is
    not trusted (``/proc`` files report 0, a file may grow while it is read).
    """
    file = Path(path)
    try:
        info = os.stat(file)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise FileRefused(file, f"{LINK_LOOP}, so it cannot be read; remove the link, or replace it with the "
                                    "file it should point to.") from None
        raise
    _check_kind(file, info.st_mode, what)
    # O_NONBLOCK: opening a named pipe swapped in after the check above must not wait for a writer.
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as handle:
        _check_kind(file, os.fstat(handle.fileno()).st_mode, what)
        chunks, total = [], 0
        while total <= limit:
            chunk = handle.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > limit:
        raise FileRefused(file, f"is larger than {size_text(limit)}, the limit for a {what}, so it was not read; "
                                f"check that this is the right file.")
    return b"".join(chunks)


def _check_kind(file: Path, mode: int, what: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise FileRefused(file, f"is a folder, not a {what}; give the path of the {what} itself.")
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise FileRefused(file, f"is not a regular file but {kind}, so it was not read; give the path of a {what} "
                            "saved on disk.")
