"""Writing files so that a reader sees the old file or the whole new one,
never half of one, and a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    On any exception (including cancellation) the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    folder = path.parent  # Path("x").parent is Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write in {folder}: {exc.strerror or exc}.", "Choose a writable folder.") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, then move the result into place."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}.", "Check free space and permissions.") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_output_path(model: Path, output: Path, overwrite: bool = False, suffix: str = ".onnx") -> None:
    """Refuse an output that would overwrite the input, or an existing file
    unless ``overwrite``, or one that cannot be written, or one not ending in ``suffix``."""
    out = Path(output)
    if out.suffix.lower() != suffix:
        raise OutputError(f"the output {out} does not end in {suffix}.", f"Name the output like model.int8{suffix}.")
    if os.path.abspath(out) == os.path.abspath(model) or (out.exists() and _same_file(out, model)):
        raise OutputError(
            f"the output {out} is the input model; the input is never overwritten.",
            "Choose another output name, e.g. model.int8.onnx.",
        )
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"the output folder {folder} does not exist.", "Create it or choose another output path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {folder} is not writable.", "Choose a folder you can write to.")
    if out.is_dir():
        raise OutputError(f"the output {out} is a folder.", f"Give a file name ending in {suffix}.")
    if out.exists() and not overwrite:
        raise OutputError(
            f"the output {out} already exists.", "Choose another name, or allow replacing it (--force on the command line)."
        )
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputError(f"the existing output {out} is read-only.", "Choose another name.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def place_files(files: list[tuple[Path, Path]]) -> None:
    """Copy each finished file (from a work folder) into place, each atomically."""
    for src, dst in files:
        try:
            with atomic_path(dst) as part:
                shutil.copyfile(src, part)
        except OSError as exc:
            raise OutputError(f"cannot write {dst}: {exc.strerror or exc}.", "Check free space and permissions.") from None
