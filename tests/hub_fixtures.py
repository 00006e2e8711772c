"""A local fake of the Hugging Face Hub's download API, for tests (a threaded HTTP server on 127.0.0.1).

It speaks what huggingface_hub's `repo_info`, `list_repo_tree`, `hf_hub_download` and
`snapshot_download` use (read from huggingface_hub's hf_api.py / file_download.py / utils/_http.py):

    GET  /api/{models|datasets}/{repo}/revision/{rev}   JSON: id, sha, siblings, gated, private
    GET  /api/{models|datasets}/{repo}/tree/{rev}       JSON list: type, path, size, oid (+ lfs)
    HEAD|GET /{repo}/resolve/{rev}/{file}                (and /datasets/{repo}/resolve/...)
         X-Repo-Commit, ETag (and X-Linked-Etag / X-Linked-Size for LFS files), Content-Length,
         Accept-Ranges; a Range request gets 206 with Content-Range.

Errors carry the headers huggingface_hub maps to its exceptions: X-Error-Code RepoNotFound (404),
GatedRepo (401 on a gated repo's files, whose metadata stays readable as on the real Hub),
RevisionNotFound, EntryNotFound. No Xet headers are ever sent (no X-Xet-Hash, no xetHash in the
tree), so huggingface_hub downloads over plain HTTP even where hf_xet is installed.

`throttle[path] = seconds per chunk` slows one file so a test can kill a pull half-way (`sent`
counts the bytes written of each file); every request is recorded in `requests` as
(method, url path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".parquet", ".gguf")
CHUNK = 8192


@dataclass
class FakeRepo:
    repo_id: str
    repo_type: str  # "model" | "dataset"
    files: dict[str, bytes]
    gated: bool = False

    @property
    def commit(self) -> str:
        h = hashlib.sha1(self.repo_id.encode())
        for name in sorted(self.files):
            h.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()


@dataclass
class FakeHub:
    repos: dict[tuple[str, str], FakeRepo] = field(default_factory=dict)
    throttle: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes of each file's body written so far
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", gated: bool = False) -> FakeRepo:
        repo = FakeRepo(repo_id, repo_type, dict(files), gated)
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def add_folder(self, repo_id: str, folder: Path, repo_type: str = "model", gated: bool = False) -> FakeRepo:
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add(repo_id, files, repo_type, gated)

    def gets(self, path_end: str) -> list[tuple[str, str, str]]:
        """The GET requests of a file (by the end of its URL path)."""
        return [r for r in list(self.requests) if r[0] == "GET" and r[1].endswith("/" + path_end)]

    # -- server
    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._handle(self, head=False)

            def do_HEAD(self):
                hub._handle(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- answers
    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        head: bool = False,
        content_type: str = "application/json",
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed pull)

    def _error(self, h, status: int, code: str, message: str, head: bool, commit: str = "") -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(h, status, json.dumps({"error": message}).encode(), headers, head)

    def _find(self, repo_type: str, parts: list[str]) -> tuple[FakeRepo | None, list[str]]:
        if len(parts) < 2:
            return None, parts
        return self.repos.get((repo_type, f"{parts[0]}/{parts[1]}")), parts[2:]

    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlparse(h.path)
        self.requests.append(("HEAD" if head else "GET", url.path, h.headers.get("Range", "")))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:1] == ["api"] and len(parts) >= 2 and parts[1] in ("models", "datasets"):
            repo_type = parts[1][:-1]
            repo, rest = self._find(repo_type, parts[2:])
            if repo is None:
                return self._error(h, 404, "RepoNotFound", "Repository not found", head)
            if len(rest) >= 2 and rest[0] == "revision":
                if rest[1] not in ("main", repo.commit):
                    return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rest[1]}", head)
                body = {
                    "id": repo.repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": f} for f in sorted(repo.files)],
                }
                return self._send(h, 200, json.dumps(body).encode(), head=head)
            if len(rest) >= 2 and rest[0] == "tree":
                entries = []
                for name in sorted(repo.files):
                    data = repo.files[name]
                    entry = {
                        "type": "file",
                        "path": name,
                        "size": len(data),
                        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                    }
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                return self._send(h, 200, json.dumps(entries).encode(), head=head)
            return self._error(h, 404, "EntryNotFound", "no such endpoint", head)
        repo_type = "model"
        if parts[:1] == ["datasets"]:
            repo_type, parts = "dataset", parts[1:]
        repo, rest = self._find(repo_type, parts)
        if repo is None or len(rest) < 3 or rest[0] != "resolve":
            return self._error(h, 404, "RepoNotFound", "Repository not found", head)
        if rest[1] not in ("main", repo.commit):
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rest[1]}", head)
        if repo.gated:
            return self._error(
                h,
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have "
                "access to it and be authenticated to access it. Please log in.",
                head,
                repo.commit,
            )
        name = "/".join(rest[2:])
        if name not in repo.files:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist", head, repo.commit)
        data = repo.files[name]
        sha = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else hashlib.sha1(data).hexdigest()
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        if name.endswith(LFS_SUFFIXES):
            headers["X-Linked-Etag"] = f'"{sha}"'
            headers["X-Linked-Size"] = str(len(data))
        start, status = 0, 200
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if head:
            return
        delay = self.throttle.get(name, 0.0)
        try:
            for i in range(0, len(body), CHUNK):
                h.wfile.write(body[i : i + CHUNK])
                self.sent[name] = self.sent.get(name, 0) + len(body[i : i + CHUNK])
                if delay:
                    h.wfile.flush()
                    time.sleep(delay)  # the server throttles this file; the test waits on progress, not on time
        except (BrokenPipeError, ConnectionResetError):
            pass
