"""Where commands write, by one rule: nothing a user wrote is changed or deleted.

A command that writes a directory (``distill --out`` bundles, ``distill --plots``, ``train --out``, ``prune --out``)
writes into a new or empty directory, or replaces one it wrote itself and recognises completely: the directory's
*manifest*, a JSON file the command writes beside the others, lists every other file with its sha256, and the
directory holds exactly those files, unchanged, and no link (``Output``, ``check_output_dir``). Anything else is
refused untouched (``OutputDirError``: one line, exit 2). The new directory is staged in a temporary sibling and
renamed into place; a previous one is moved aside, put back if anything fails, and deleted only once the new one
is there (``write_output_dir``). A single file (``report -o``) replaces only a file the command recognises as its
own (``check_output_file``). Sweep directories grow by appending and follow their own rule (``jaxscd.sweep``),
built on ``unexpected_entries``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jaxscd.circuits.base import atomic_write, sha256_bytes
from jaxscd.errors import InputError

_SHA256 = re.compile(r"[0-9a-f]{64}")


class OutputDirError(InputError, OSError):
    """An output path that is neither new, empty, nor something the command wrote and recognises completely."""


@dataclass(frozen=True)
class Output:
    """What one command writes into a directory. ``files_of(manifest JSON)``: the manifest's {path: sha256} table,
    None when the manifest is not one this command writes."""

    option: str  # names the path in errors: "--out", "--plots"
    what: str  # "a jaxscd bundle"
    manifest: str  # "certificate.json"
    files_of: Callable[[object], dict | None]
    manifest_what: str = "one jaxscd writes"  # "a jaxscd certificate of this version"


def listed_file_problem(name, digest, manifest: str, where: str = "directory") -> str | None:
    """Why ``name: digest`` cannot be an entry of a manifest's files table (None if it can): a relative path inside
    the directory (``where`` names it), other than the manifest itself, with a sha256 hex digest."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if path is None or not name or path.is_absolute() or ".." in path.parts or "\\" in name or \
            str(path) != name or name == manifest:
        return f"not a relative path inside the {where}"
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return f"its sha256 {digest!r} is not 64 hex digits"
    return None


def files_table(data, manifest: str, key: str = "files") -> dict | None:
    """``data[key]`` when it is a valid files table of ``manifest`` (see ``listed_file_problem``), else None."""
    files = data.get(key) if isinstance(data, dict) else None
    if not isinstance(files, dict) or any(listed_file_problem(n, d, manifest) for n, d in files.items()):
        return None
    return files


def hashes(files: dict) -> dict:
    """{path: sha256} of {path: bytes}, for a manifest."""
    return {name: sha256_bytes(data) for name, data in files.items()}


def unexpected_entries(out: Path, expected: Callable[[str], bool]) -> tuple[list, list]:
    """(links, other files) under the directory ``out``, as paths relative to it: every link, and every file whose
    path ``expected`` does not accept."""
    links, others = [], []
    for folder, dirs, names in os.walk(out):
        for name in dirs + names:
            path = Path(folder) / name
            relative = path.relative_to(out).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif name in names and not expected(relative):
                others.append(relative)
    return sorted(links), sorted(others)


def _not_written_by(out: Path, output: Output) -> str | None:
    """Why the existing, non-empty directory ``out`` is not one ``output`` wrote (None if it is, completely)."""
    try:
        manifest = json.loads((out / output.manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return f"it holds no readable {output.manifest}"
    files = output.files_of(manifest)
    if files is None:
        return f"its {output.manifest} is not {output.manifest_what}"
    links, unlisted = unexpected_entries(out, lambda p: p in files or p == output.manifest)
    if links:
        return f"it holds a link, {links[0]!r}"
    if unlisted:
        return f"it holds files its {output.manifest} does not list ({', '.join(unlisted[:3])})"
    missing = sorted(name for name in files if not (out / name).is_file())
    if missing:
        return f"files its {output.manifest} lists are missing ({', '.join(missing[:3])})"
    changed = sorted(name for name, digest in files.items() if sha256_bytes((out / name).read_bytes()) != digest)
    if changed:
        return f"files were changed since jaxscd wrote them ({', '.join(changed[:3])})"
    return None


def check_output_dir(out: str | os.PathLike, output: Output) -> None:
    """Raise OutputDirError unless ``out`` is new, an empty directory, or a directory ``output`` wrote and
    recognises completely (which writing replaces)."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        problem = "it is a link" if out.is_symlink() else "it is not a directory"
    elif not out.exists() or not any(out.iterdir()):
        return
    else:
        problem = _not_written_by(out, output)
    if problem is not None:
        raise OutputDirError(f"{output.option} {str(out)!r} exists and is not {output.what} to replace ({problem}); "
                             f"choose a new directory")


def write_output_dir(out: str | os.PathLike, output: Output, files: dict) -> Path:
    """Write {path: bytes} (the manifest among them) as the directory ``out``, atomically: staged in a temporary
    sibling, renamed into place; a previous directory ``output`` wrote is moved aside, put back if anything
    fails, and deleted only once the new one is in place."""
    out = Path(out)
    check_output_dir(out, output)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    previous = None
    try:
        _readable(staging, 0o777)  # mkdtemp makes it private; the directory it becomes is an ordinary one
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        check_output_dir(out, output)  # again: the directory may have changed while the files were computed
        if out.exists():
            previous = staging.with_name(staging.name + ".previous")
            os.rename(out, previous)
        os.rename(staging, out)
    except BaseException:
        if previous is not None and previous.exists() and not out.exists():
            os.rename(previous, out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return out


def check_output_file(path: str | os.PathLike, option: str, what: str, recognise: Callable[[bytes], bool]) -> None:
    """Raise OutputDirError unless ``path`` is new or a regular file (not a link) whose first 4 KiB ``recognise``
    accepts as ``what`` (which writing replaces)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_file():
        kind = "a link" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file"
        raise OutputDirError(f"{option} {str(path)!r} exists and is {kind}, not {what}; choose another path")
    with open(path, "rb") as stream:
        if recognise(stream.read(4096)):
            return
    raise OutputDirError(f"{option} {str(path)!r} exists and is not {what}, so it is left as it is; choose another "
                         f"path or move it away")


def write_file(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write one file atomically (``atomic_write``) with the permissions a new file gets (its temporary file was
    private)."""
    path = Path(path)
    atomic_write(path, data)
    _readable(path, 0o666)
    return path


def _readable(path: Path, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)
