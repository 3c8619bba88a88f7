"""The output file: one line per input id, rewritten atomically from the store.

Every line of the output, whether appended live as results arrive or rebuilt from the job store
at a run's start and end, is rendered by `jobs.encoding` (one renderer for both). The store
only records and reads; this module writes the user's file.

The output is a regular file, or a symbolic link to one: the file it names is what is written
(`real_output_path`), and its job store lives beside that file. A device, a named pipe or a
socket is refused before anything is made (`check_output_path`): the output is rewritten by
renaming a new file over it, which would replace the device itself.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmgather._errors import InvalidInputError, OutputExistsError
from llmgather.jobs.encoding import render_stored

if TYPE_CHECKING:
    from llmgather.jobs.store.base import JobStore

__all__ = [
    "append_lines",
    "check_output_path",
    "real_output_path",
    "refuse_foreign_output",
    "rewrite_output",
]

_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def real_output_path(output_path: str) -> str:
    """The file the results go to: `output_path`, or the file it names if it is a symbolic link.

    Every write goes there, the rename that rewrites it too: a rename over the link would
    replace the link with a plain file and leave the file it names as it was.
    """
    return os.path.realpath(output_path) if os.path.islink(output_path) else output_path


def check_output_path(output_path: str) -> None:
    """InvalidInputError unless results can be written at `output_path`: a regular file (or a
    link to one), or a new file in a folder that exists."""
    try:
        mode = os.stat(output_path).st_mode  # through any link, to what would be written
    except (FileNotFoundError, NotADirectoryError):
        directory = os.path.dirname(os.path.abspath(real_output_path(output_path)))
        if not os.path.isdir(directory):
            raise InvalidInputError(
                f"cannot write {output_path}: the folder {directory} does not exist"
            ) from None
        return
    if stat.S_ISDIR(mode):
        raise InvalidInputError(
            f"the output {output_path} is a folder; give the path of a file to write the results "
            f"to, such as {os.path.join(output_path, 'results.jsonl')}"
        )
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    shown = output_path
    if os.path.islink(output_path):
        shown += f" (a link to {os.path.realpath(output_path)})"
    raise InvalidInputError(
        f"the output {shown} is {kind}: llmgather writes its results to a regular file, "
        "rewritten whole at the end, with a job store beside it to resume from. Give the path "
        "of a file (such as results.jsonl), then read it or follow it with `tail -f`"
    )


def refuse_foreign_output(output_path: str, store_path: str) -> None:
    """OutputExistsError when `output_path` holds a non-empty file and no job store is beside
    it (at `store_path`): a file some other program or an old job wrote, which a run would
    replace. An empty file is taken: it holds nothing to lose."""
    if os.path.exists(store_path):
        return  # this job's own output (or another job's, which `prepare` tells apart)
    try:
        size = os.path.getsize(output_path)
    except FileNotFoundError:
        return
    if size:
        raise OutputExistsError(output_path, size, store_path)


def append_lines(output_path: str, lines: Sequence[bytes]) -> None:
    """Append rendered lines to the output: the live view for `tail -f`, never the truth."""
    with open(output_path, "ab") as out:
        out.write(b"".join(lines))


def rewrite_output(store: JobStore, output_path: str) -> int:
    """Atomically rewrite `output_path` with every finished item of `store`, in input order.

    A temporary file beside it, fsynced, then renamed over it: a reader or a crash sees the old
    file or the new one, never half of one. Returns the number of lines written.
    """
    output_path = real_output_path(output_path)
    directory = os.path.dirname(os.path.abspath(output_path))
    tmp = os.path.join(
        directory, f".{os.path.basename(output_path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    written = 0
    try:
        # umask decides the mode, as for any file the user creates
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with (
            os.fdopen(fd, "wb", buffering=1 << 20) as out,
            contextlib.closing(store.finished_rows()) as rows,
        ):
            for fields, result in rows:
                out.write(render_stored(result, fields))
                written += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written
