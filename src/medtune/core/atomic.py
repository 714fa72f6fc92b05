"""Atomic writes: every file and directory medtune writes appears whole under its final name, or not at all.

A file is written to a hidden temporary sibling in the same directory, flushed to disk (``fsync``) and
renamed over the final name (``os.replace``, atomic on POSIX). A directory (an adapter, a checkpoint, a
merged model: anything ``save_pretrained`` writes) is built in a hidden sibling ``.<name>.partial`` and
then swapped in; an old directory stays complete under the final name until the new one is. A process
killed mid-write leaves the old version, or none, plus a hidden leftover that the next write clears.

    write_text(path, text)                  write_json(path, obj)
    with atomic_file(path) as f: ...        a stream (JSONL, CSV)
    with atomic_path(path) as tmp: ...      a writer that wants a file name (savefig, a converter)
    with atomic_dir(path) as tmp: ...       a writer that fills a directory (save_pretrained)

Test hook: ``MEDTUNE_TEST_PAUSE_IN_SAVE=<glob>`` stops the process (SIGSTOP) just before a file or
directory whose name matches is committed, so a test can kill it at the most dangerous moment.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

PAUSE_ENV = "MEDTUNE_TEST_PAUSE_IN_SAVE"
FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_file(path, encoding=encoding) as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_json(path: str | Path, obj: Any, **dump_kwargs) -> None:
    write_text(path, json.dumps(obj, **dump_kwargs))


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """An open temporary file that replaces ``path`` when the block ends without an error."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding, newline=newline) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside ``path`` (same suffix, so writers that infer the format from it work)
    that replaces ``path`` when the block ends without an error; on an error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as to open()
        yield tmp
        _fsync_file(tmp)
        _pause_if_asked(path)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _reraise(exc, tmp, path)
    except Exception as exc:
        full = disk_full(path.parent)
        tmp.unlink(missing_ok=True)
        if full:
            raise no_space(path) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | Path, commit: bool = True, shared: bool = False) -> Iterator[Path]:
    """A fresh hidden directory ``.<name>.partial`` beside ``path``, swapped in for ``path`` when the block
    ends without an error. ``commit=False`` (another process of a distributed run writes the directory)
    only yields the same staging path: nothing is created, cleared or moved. ``shared=True`` (a cache
    that several processes may fill at once) gives each process its own ``.<name>.<pid>.partial``."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial") if shared else staging_dir(path)
    if not commit:
        yield staging
        return
    try:
        if staging.exists():  # left by a killed run
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        yield staging
        replace_dir(staging, path)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _reraise(exc, staging, path)
    except Exception as exc:
        full = disk_full(path.parent)
        shutil.rmtree(staging, ignore_errors=True)
        if full:
            raise no_space(path) from exc
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def staging_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def replace_dir(staging: Path, path: Path) -> None:
    """Put the complete directory ``staging`` at ``path``: a plain rename when ``path`` is new, an atomic
    exchange (Linux ``renameat2``) when it exists, then the old one is deleted."""
    for root, _, files in os.walk(staging):
        for name in files:
            _fsync_file(Path(root) / name)
    _fsync_dir(staging)
    _pause_if_asked(path)
    if not path.exists():
        os.rename(staging, path)
    elif _exchange(staging, path):
        shutil.rmtree(staging)  # it now holds the previous version
    else:  # no atomic exchange here: for a moment only the .old name holds the previous version
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(path, old)
        os.rename(staging, path)
        shutil.rmtree(old)
    _fsync_dir(path.parent)


def is_disk_error(exc: BaseException) -> bool:
    """An error writing output that the user fixes outside medtune: disk full, quota, read-only, no permission."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_full(directory: Path) -> bool:
    """Whether the filesystem holding ``directory`` is (all but) full: a writer that is not plain Python
    (torch.save, safetensors) reports a full disk as its own error type, not as an ``OSError``."""
    try:
        return shutil.disk_usage(directory).free < FULL_BELOW
    except OSError:
        return False


def no_space(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the OS or filesystem cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync_file(path)


def _reraise(exc: OSError, tmp: Path, path: Path) -> None:
    """Raise the error as the user should read it: about the final path, not the hidden temporary one."""
    if exc.filename is not None and not str(exc.filename).startswith(str(tmp)):
        raise exc  # about another file the writer touched
    raise type(exc)(exc.errno, exc.strerror, str(path)) from exc


def _pause_if_asked(path: Path) -> None:
    pattern = os.environ.get(PAUSE_ENV)
    if pattern and fnmatch.fnmatch(path.name, pattern):
        log.warning("%s: stopping before committing %s", PAUSE_ENV, path)
        os.kill(os.getpid(), signal.SIGSTOP)
