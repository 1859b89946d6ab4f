"""Writing files so that no reader ever sees one half written.

Every file fastseg writes (reports, plots, accumulators, counts, checkpoint blocks and
manifests, the command's ``--output``) goes through :func:`write_atomically`: it is
written under a hidden temporary name beside its target and renamed into place, with the
permissions an ordinary new file would get (``0o666 & ~umask``), or those of the file it
replaces.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_UMASK_LOCK = threading.Lock()
#: errno values of os.link on a file system without hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux shows it in ``/proc/self/status``; elsewhere it is set and restored under a
    lock, to the most restrictive value meanwhile, so a file another thread creates in
    that instant is never more open than intended.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """Permission bits for a file written to `path`: the existing file's, else the umask's."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode) & 0o777
    return 0o666 & ~current_umask()


def _naming_target(exc: BaseException, path: Path, tmp: Path | None) -> BaseException:
    """`exc` (or one of its type and errno, with its traceback) naming `path`, not `tmp`.

    `tmp` is None when the temporary file could not even be created (its name unknown):
    then any file name the error carries is the temporary's.
    """
    target = os.fspath(path)
    if isinstance(exc, OSError) and exc.errno is not None:
        if not (
            exc.filename is None or tmp is None or os.fspath(exc.filename) == os.fspath(tmp)
        ):
            return exc  # about another file than the one written
        strerror = exc.strerror
        if tmp is None and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            strerror = f"{strerror} (no folder {os.fspath(path.parent)!r})"
        try:
            renamed = type(exc)(exc.errno, strerror, target)
        except TypeError:  # a subclass with another signature: change it in place
            exc.filename = target
            return exc
        return renamed.with_traceback(exc.__traceback__)
    if tmp is not None:
        exc.args = tuple(
            a.replace(os.fspath(tmp), target) if isinstance(a, str) else a for a in exc.args
        )
    return exc


def _link_exclusively(tmp: Path, path: Path, mode: int) -> None:
    """Give `tmp`'s content the name `path`, failing with FileExistsError if it exists."""
    try:
        os.link(tmp, path)
        return
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # No hard links on this file system: create the target exclusively, then fill it.
    data = tmp.read_bytes()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)


def write_atomically(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, exclusive: bool = False
) -> Path:
    """Run ``write(tmp)`` on a new temporary file beside `path`, then rename it to `path`.

    The file appears complete or not at all; a failed write leaves an earlier file at
    `path` untouched and no temporary behind. A new file gets the permissions the umask
    gives (``0o666 & ~umask``, e.g. 0o644), not the temporary file's 0o600; a replaced
    file keeps its mode. Returns `path`.

    Parameters
    ----------
    path : path
        The target.
    write : callable
        Writes the content to the temporary path it is given.
    exclusive : bool, default False
        Fail with :class:`FileExistsError` if `path` exists, even when another process
        creates it meanwhile (the complete file is hard-linked to `path`), instead of
        replacing it.

    Raises
    ------
    OSError
        Of the type and errno of the failure (missing folder, permission denied, disk
        full, ...), naming `path`, never the temporary name; any other exception of
        `write` likewise names `path` where it named the temporary file.
    """
    path = Path(path)
    mode = _mode_for(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming_target(exc, path, None) from None
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        write(tmp)
        if exclusive:
            _link_exclusively(tmp, path, mode)
        else:
            os.replace(tmp, path)
    except Exception as exc:
        renamed = _naming_target(exc, path, tmp)
        if renamed is exc:
            raise
        raise renamed from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> Path:
    """:func:`numpy.savez` (uncompressed, no pickles) to `path`, atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: savez would add ".npz" to a name
            np.savez(f, **arrays)

    return write_atomically(path, write)
