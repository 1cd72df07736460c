"""Early checks of local data files (task CSV/TSV/JSON(L), corpus text), so that an empty
file, a file that is not UTF-8, or a TSV named ``.csv`` is named in one line instead of
surfacing as ``datasets``' "An error occurred while generating the dataset"."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

PROBE_BYTES = 1 << 20  # the head read to sniff encoding and delimiter
TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".text", ".cor")


class DataFileError(ValueError):
    """A local data file cannot be read as declared."""


def not_utf8(path: Path, exc: UnicodeDecodeError) -> DataFileError:
    """``path`` is not UTF-8 at byte offset ``exc.start``."""
    return DataFileError(
        f"{path} is not UTF-8 text (at byte offset {exc.start}): convert it, e.g. "
        f"`iconv -f latin1 -t utf-8 {path} > {path.with_name(path.stem + '.utf8' + path.suffix)}`")


def check(path: Path, what: str = "data file") -> None:
    """Refuse ``path`` when it is empty, not UTF-8 (in its first MiB), or a tab-separated file
    named ``.csv``. Binary formats (parquet) are only checked for emptiness."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataFileError(f"{what} {path} is empty (0 bytes): point to a file with data, or remove it")
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        return
    with path.open("rb") as f:
        head = f.read(PROBE_BYTES)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut = len(head) == PROBE_BYTES and exc.start >= len(head) - 3  # a character split by the probe
        if not cut:
            raise not_utf8(path, exc) from None
    if suffix == ".csv":
        header = head.split(b"\n", 1)[0]
        if b"\t" in header and b"," not in header:
            raise DataFileError(f"{path} looks tab-separated (its first line has tabs and no comma) but is "
                                "named .csv: rename it to .tsv")


def first_not_utf8(paths: Sequence[Path], chunk: int = 1 << 20) -> Optional[DataFileError]:
    """The error for the first of ``paths`` that is not UTF-8 throughout (a full scan: only
    called once a read has failed on a decoding error), else None."""
    import codecs

    for path in map(Path, paths):
        dec = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with path.open("rb") as f:
            while True:
                block = f.read(chunk)
                pending = len(dec.getstate()[0])  # bytes of a character split by the last block
                try:
                    dec.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    exc.start += offset - pending
                    return not_utf8(path, exc)
                if not block:
                    break
                offset += len(block)
    return None


def explain_read_error(paths: Sequence[Path], exc: BaseException) -> Optional[DataFileError]:
    """A clear error for a failed read of ``paths`` when its cause is a decoding error, else None."""
    seen = set()
    cur: Optional[BaseException] = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UnicodeDecodeError):
            return first_not_utf8(paths)
        cur = cur.__cause__ or cur.__context__
    return None


_DIGESTS: dict = {}


def content_digest(path: str | Path) -> Optional[str]:
    """The :func:`tinyfw.cache.digest` of a local file's bytes (None when it does not exist), for
    cache keys that depend on a file: an edit in place changes it, even within the same second
    and at the same size. Remembered within a process per path, size, inode, mtime and ctime (which
    every write changes and ``touch`` cannot set back)."""
    from tinyfw.cache import digest

    p = Path(path).expanduser()
    if not p.is_file():
        return None
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _DIGESTS:
        with p.open("rb") as f:
            _DIGESTS[memo] = digest(iter(lambda: f.read(1 << 20), b""))
    return _DIGESTS[memo]
