"""Reading and writing session files: the one place that touches the TOML on disk.

`SessionFile` keeps the parsed tomlkit document beside the typed `Session`. Saving writes the
objects back into that document, changing only what changed since the last load or save, so
a file a person edited by hand keeps its comments, key order and the keys this version does
not know. Writes are atomic (temp file in the same folder, fsync, rename) and keep the
previous file as `NAME.toml.bak`. A file from a newer schema is refused, never rewritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.toml_document import TOMLDocument

from sessions import codec
from sessions.model import SCHEMA_VERSION, Session
from sessions.validate import Problem, SessionError, all_problems, problems_for
from sessions.workspace import workspace_for

__all__ = ["MIGRATIONS", "Problem", "SaveError", "SessionError", "SessionFile"]

# version -> function that upgrades a document of that version to version + 1, in place.
# Example for a future schema 2: MIGRATIONS[1] = lambda doc: doc.add("new_key", [])
MIGRATIONS: dict[int, Callable[[TOMLDocument], None]] = {}


class SaveError(SessionError):
    """The file could not be written (disk full, permissions, changed by someone else)."""


class SessionFile:
    """A session and the file it lives in. Load, change `.session`, `save()`."""

    def __init__(self, path: str | Path, session: Session, doc: TOMLDocument, text: str) -> None:
        self.path = Path(path)
        self.session = session
        self._doc = doc
        self._text = text  # what the file holds now, as far as we know
        self._saved = self._plain()  # the plain form of what the document holds
        self._needs_write = False
        self._stat = _stat_key(self.path)

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> SessionFile:
        """Read and validate a session file; raise SessionError listing every problem."""
        path = Path(path)
        text = read_text(path)
        doc = parse(text, path)
        migrated = _check_schema(doc, path, text)
        raw: list = []
        session = codec.decode(Session, doc.unwrap(), (), raw)
        raw = all_problems(raw, session)
        if raw:
            raise SessionError(problems_for(raw, path, text))
        sf = cls(path, session, doc, text)
        sf._needs_write = migrated or "schema" not in doc  # the next save writes `schema`
        return sf

    @classmethod
    def create(cls, path: str | Path, session: Session, header: str = "") -> SessionFile:
        """Write a new session file; refuse to overwrite one that exists.

        `header` becomes comment lines at the top of the file.
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            raise SessionError("already exists; open it, or pick a name that is not taken.", path)
        _raise_problems(session, path)
        doc = tomlkit.document()
        for line in header.strip("\n").splitlines() if header else []:
            doc.add(tomlkit.comment(line.rstrip()) if line.strip() else tomlkit.comment(""))
        if header:
            doc.add(tomlkit.nl())
        sf = cls(path, session, doc, "")
        sf._saved = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        sf._write(exclusive=True)
        return sf

    # -- state --------------------------------------------------------------------------------

    @property
    def workspace(self) -> Path:
        """The folder beside the file that holds datasets and jobs (`my.toml` -> `my/`)."""
        return workspace_for(self.path)

    @property
    def text(self) -> str:
        """The TOML text as last read or written."""
        return self._text

    def changed(self) -> bool:
        """Whether `.session` differs from what the file holds (for a saved/unsaved mark)."""
        return self._needs_write or not codec.same(self._plain(), self._saved)

    def validate(self) -> list[Problem]:
        """Every problem of the session as it is in memory now (lines are not known yet)."""
        return _problems(self._plain(), self.path)

    # -- saving -------------------------------------------------------------------------------

    def save(self, force: bool = False) -> bool:
        """Validate and write the file atomically if anything changed; return whether it wrote.

        Refuses (SaveError) when the file changed on disk since it was loaded, unless `force`.
        """
        plain = self._plain()
        problems = _problems(plain, self.path)
        if problems:
            raise SessionError(problems)
        unchanged = not self._needs_write and codec.same(plain, self._saved)
        if not force and unchanged and self.path.exists():
            return False
        now = _stat_key(self.path)
        if not force and now is not None and now != self._stat:
            raise SaveError(
                "changed on disk since it was opened; reopen it to see those changes, "
                "or save with force to overwrite them.",
                self.path,
            )
        self._write(exclusive=False, plain=plain)
        return True

    def _plain(self) -> dict:
        plain = codec.to_plain(self.session)
        return {"schema": plain.pop("schema"), **plain}

    def _merge(self, new: dict) -> None:
        if "schema" not in self._doc and len(self._doc):
            _insert_first(self._doc, "schema", new["schema"])
        try:
            codec.merge(self._doc, new, self._saved, Session)
        except codec.UnrepresentableError as e:
            self._doc = tomlkit.parse(self._text) if self._text else tomlkit.document()
            raise SaveError(f"{e}; set the field to text, a number or a list instead.", self.path) from e

    def _write(self, exclusive: bool, plain: dict | None = None) -> None:
        new = self._plain() if plain is None else plain
        self._merge(new)
        text = self._doc.as_string()
        text = text.rstrip("\n") + "\n" if text.strip() else text
        try:
            atomic_write(self.path, text, exclusive=exclusive)
        except FileExistsError as e:
            self._doc = tomlkit.document()
            raise SessionError("already exists; open it, or pick a name that is not taken.", self.path) from e
        except OSError as e:
            # The document was changed for a write that did not happen: go back to the file.
            self._doc = tomlkit.parse(self._text) if self._text else tomlkit.document()
            reason = e.strerror or str(e)
            raise SaveError(f"could not be saved ({reason}); the previous file is unchanged.", self.path) from e
        self._text = text
        self._saved = new
        self._needs_write = False
        self._stat = _stat_key(self.path)


# ---------------------------------------------------------------------------------------------
# reading


def read_text(path: Path) -> str:
    """The file's text, or a SessionError saying in one sentence why it cannot be read."""
    try:
        if path.is_dir():
            raise SessionError("is a folder, not a session file; give the path of a .toml file.", path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionError(
            "does not exist; check the path, or create a session with `persona-tui new PATH`.", path
        ) from None
    except PermissionError:
        raise SessionError("cannot be read (permission denied); check the file's permissions.", path) from None
    except IsADirectoryError:
        raise SessionError("is a folder, not a session file; give the path of a .toml file.", path) from None
    except OSError as e:
        raise SessionError(f"cannot be read ({e.strerror or e}).", path) from None
    if b"\x00" in data:
        raise SessionError("is a binary file, not a TOML session; give the path of a session .toml file.", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SessionError([Problem(str(path), line, "", "is not UTF-8 text; save the file as UTF-8.")]) from None
    return text.removeprefix("\ufeff")


def parse(text: str, path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as e:
        message = re.sub(r"\s+at line \d+ col \d+$", "", str(e)).rstrip(".")
        message = message.replace("Unexpected character: '\\x00'", "Unexpected end of file")
        problem = f"is not valid TOML ({message} at column {e.col + 1}); fix the syntax on that line."
        raise SessionError([Problem(str(path), e.line, "", problem)]) from None
    except (TOMLKitError, ValueError) as e:
        m = re.search(r"line (\d+)", str(e))
        line = int(m.group(1)) if m else None
        raise SessionError([Problem(str(path), line, "", f"is not valid TOML ({e}); fix the file.")]) from None


def _check_schema(doc: TOMLDocument, path: Path, text: str) -> bool:
    """Refuse newer schemas; migrate older ones in memory. Return whether it migrated."""
    if "schema" not in doc:
        return False
    version = doc["schema"]
    version = version.unwrap() if hasattr(version, "unwrap") else version
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SessionError(
            problems_for([(("schema",), f"is {version!r}; write schema = {SCHEMA_VERSION}.")], path, text)
        )
    if version > SCHEMA_VERSION:
        raise SessionError(
            problems_for(
                [
                    (
                        ("schema",),
                        f"is {version}, from a newer persona-tui (this one reads up to "
                        f"{SCHEMA_VERSION}); upgrade persona-tui to open it. The file was not changed.",
                    )
                ],
                path,
                text,
            )
        )
    for v in range(version, SCHEMA_VERSION):
        if v not in MIGRATIONS:
            raise SessionError(
                problems_for(
                    [
                        (
                            ("schema",),
                            f"is {version}, which this persona-tui cannot upgrade; open it with an older persona-tui.",
                        )
                    ],
                    path,
                    text,
                )
            )
        MIGRATIONS[v](doc)
        doc["schema"] = v + 1
    return version != SCHEMA_VERSION


# ---------------------------------------------------------------------------------------------
# writing


def atomic_write(path: str | Path, text: str, exclusive: bool = False, backup: bool = True, fsync: bool = True) -> None:
    """Write `text` to `path` so that a crash leaves either the old or the new file, never half.

    Temp file in the same folder, fsync, then rename over the target; with `backup` the
    previous file is kept as `NAME.bak`. With `exclusive`, refuse (FileExistsError) if `path`
    exists. The one atomic write: jobs, datasets, scores and reports use it too; `fsync=False`
    is for files rewritten every few seconds (a job's status) where a power cut may lose the
    last update but a reader must never see half a file.
    """
    target = Path(os.path.realpath(path))  # write through a symlink, not over it
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if exclusive:
            os.chmod(tmp, 0o644)
            os.link(tmp, target)  # fails if target exists: no clobbering a file made meanwhile
            os.unlink(tmp)
        else:
            try:
                os.chmod(tmp, target.stat().st_mode & 0o7777)
            except FileNotFoundError:
                os.chmod(tmp, 0o644)
            if backup:
                _keep_backup(target)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(folder)


def backup_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".bak")


def _keep_backup(target: Path) -> None:
    if not target.exists():
        return
    bak = backup_path(target)
    tmp = bak.with_name(f".{bak.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(target, tmp)  # the old inode stays as the backup: no copy needed
    except OSError:
        shutil.copy2(target, tmp)
    os.replace(tmp, bak)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stat_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _insert_first(doc: TOMLDocument, key: str, value: object) -> None:
    """Put `key` before the first key of a hand-written file (after its opening comments)."""
    body = doc.body
    index = next((i for i, (k, _) in enumerate(body) if k is not None), None)
    if index is None:
        doc[key] = value
    else:
        doc._insert_at(index, key, value)  # tomlkit has no public "insert at"


def _problems(plain: dict, path: Path) -> list[Problem]:
    """Problems of a session in its plain form: types first (values set from Python), then meaning."""
    raw: list = []
    checked = codec.decode(Session, plain, (), raw)
    return problems_for(all_problems(raw, checked), path)


def _raise_problems(session: Session, path: Path) -> None:
    problems = _problems(codec.to_plain(session), path)
    if problems:
        raise SessionError(problems)
