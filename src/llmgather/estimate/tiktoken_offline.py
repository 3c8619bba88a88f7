"""tiktoken's encodings with no network: its cache fed from the files `bpe-openai` ships.

tiktoken downloads an encoding's BPE file from OpenAI's blob store at first use and keeps it
in its cache (`TIKTOKEN_CACHE_DIR`, else `DATA_GYM_CACHE_DIR`, else `<tmp>/data-gym-cache`),
under the SHA-1 of the file's URL. With no internet that first use fails. The `bpe-openai`
wheel (MIT) ships the very same files gzipped: each is checked against the SHA-256 tiktoken
itself expects of the download (tiktoken checks it again on reading) and put where tiktoken
looks, so tiktoken's own loader and encoder do the counting, never a copy of them.

Both packages are optional (`pip install 'llmgather[tokens]'`): without them, or with
tiktoken's cache turned off (`TIKTOKEN_CACHE_DIR=""`), `load_encoding` says why and the
caller falls back to the approximation.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import tiktoken

__all__ = ["ENCODINGS", "Loaded", "encoding_name_for", "load_encoding"]

_BLOB: Final = "https://openaipublic.blob.core.windows.net/encodings/"

# The encodings `bpe-openai` ships, with the SHA-256 tiktoken (tiktoken_ext.openai_public)
# requires of each file: the same bytes as its download, or nothing.
ENCODINGS: Final = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

_INSTALL_HINT: Final = "pip install 'llmgather[tokens]' to count exactly"


@dataclass(frozen=True, slots=True)
class Loaded:
    """An encoding, or None and why not (said to the user beside the approximation)."""

    encoding: tiktoken.Encoding | None
    why_not: str | None = None


def encoding_name_for(model: str) -> str | None:
    """tiktoken's encoding for an OpenAI model name (`gpt-4o-mini`: o200k_base), or None for
    a model tiktoken does not know or when tiktoken is not installed."""
    try:
        import tiktoken.model
    except ImportError:
        return None
    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return None


_loaded: dict[str, Loaded] = {}


def load_encoding(name: str) -> Loaded:
    """tiktoken's encoding `name`, loaded offline (once per process)."""
    if name not in _loaded:
        _loaded[name] = _load(name)
    return _loaded[name]


def _load(name: str) -> Loaded:
    if name not in ENCODINGS:
        return Loaded(None, f"no offline file of tiktoken's {name} is installed")
    try:
        import tiktoken
    except ImportError:
        return Loaded(None, f"tiktoken is not installed ({_INSTALL_HINT})")
    shipped = _shipped_file(name)
    if shipped is None:
        return Loaded(
            None, f"bpe-openai, which ships {name} offline, is not installed ({_INSTALL_HINT})"
        )
    cache_dir = _tiktoken_cache_dir()
    if cache_dir == "":
        return Loaded(None, "TIKTOKEN_CACHE_DIR is empty, which turns tiktoken's file cache off")
    try:
        _feed_cache(Path(cache_dir), name, shipped)
    except OSError as error:
        return Loaded(None, f"tiktoken's cache {cache_dir} cannot be written: {error.strerror}")
    except ValueError as error:
        return Loaded(None, str(error))
    try:
        return Loaded(tiktoken.get_encoding(name))
    except Exception as error:  # tiktoken fell back to a download: the file was not taken
        return Loaded(None, f"tiktoken could not load {name} offline: {error}")


def _shipped_file(name: str) -> Path | None:
    """The gzipped file in `bpe-openai`'s package data, found without importing the package
    (its 70 MB extension module is not needed)."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    return path if path.is_file() else None


def _tiktoken_cache_dir() -> str:
    """Where tiktoken looks for its files, as `tiktoken.load.read_file_cached` decides it."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _feed_cache(cache_dir: Path, name: str, shipped: Path) -> None:
    """Put the shipped file where tiktoken looks for its download, unless a good copy is
    there already. Written to a temporary name and renamed: a reader never sees half a file."""
    expected = ENCODINGS[name]
    target = cache_dir / hashlib.sha1(f"{_BLOB}{name}.tiktoken".encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return
    data = gzip.decompress(shipped.read_bytes())
    if hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(
            f"the {name} file bpe-openai ships is not the one tiktoken expects; "
            "reinstall it or upgrade llmgather"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
