"""An S3-compatible object store that keeps its objects on disk: moto's server, made durable.

moto's standalone server keeps everything in memory, so a restart would lose every artifact. This
wraps it: every write the server acknowledges (put, multipart complete, copy, delete) is first
mirrored to a folder, and the next start loads the folder back. Objects are stored by content
hash with a manifest per bucket, so a missing or damaged file is detected at start-up.

Run it as ``python -m mlflow_series.s3store --port 9000 --data DIR``; the servers module does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

MANIFEST = "manifest.json"
EXIT_DAMAGED = 3
#: S3's rule for new bucket names (moto only checks the length): 3-63 lowercase letters, digits,
#: dots and hyphens, starting and ending with a letter or digit, not shaped like an IP address.
BUCKET_NAME = re.compile(r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StoreDamaged(RuntimeError):
    """Objects listed in a manifest are missing or do not match their checksum."""


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class DiskMirror:
    """Mirror of the buckets of one moto S3 backend in a folder: <bucket>/manifest.json, blobs/."""

    def __init__(self, root: Path, backend: Any) -> None:
        self.root = root
        self.backend = backend
        self.lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def _manifest(self, bucket: str) -> dict[str, dict[str, Any]]:
        path = self.root / bucket / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {}

    def check(self) -> list[str]:
        """Problems with the stored objects: one line per missing or damaged object."""
        problems = []
        for bucket_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for key, meta in self._manifest(bucket_dir.name).items():
                blob = bucket_dir / "blobs" / meta["sha256"]
                if not blob.exists():
                    problems.append(f"s3://{bucket_dir.name}/{key}: missing")
                elif hashlib.sha256(blob.read_bytes()).hexdigest() != meta["sha256"]:
                    problems.append(f"s3://{bucket_dir.name}/{key}: damaged (checksum differs)")
        return problems

    def forget_lost(self) -> int:
        """Drop missing or damaged objects from the manifests; returns how many were dropped."""
        dropped = 0
        for bucket_dir in (p for p in self.root.iterdir() if p.is_dir()):
            manifest = self._manifest(bucket_dir.name)
            for key, meta in list(manifest.items()):
                blob = bucket_dir / "blobs" / meta["sha256"]
                if (
                    not blob.exists()
                    or hashlib.sha256(blob.read_bytes()).hexdigest() != meta["sha256"]
                ):
                    del manifest[key]
                    dropped += 1
            _atomic_write(bucket_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
        return dropped

    def restore(self) -> int:
        """Load every stored bucket and object into the backend; returns the object count."""
        count = 0
        for bucket_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            self.backend.create_bucket(bucket_dir.name, "us-east-1")
            for key, meta in self._manifest(bucket_dir.name).items():
                blob = bucket_dir / "blobs" / meta["sha256"]
                self.backend.put_object(bucket_dir.name, key, blob.read_bytes())
                count += 1
        return count

    def sync(self, bucket: str) -> None:
        """Make the folder of one bucket match the backend (called after each successful write)."""
        with self.lock:
            bucket_dir = self.root / bucket
            if bucket not in self.backend.buckets:
                if bucket_dir.exists():
                    for path in sorted(bucket_dir.rglob("*"), reverse=True):
                        path.unlink() if path.is_file() else path.rmdir()
                    bucket_dir.rmdir()
                return
            (bucket_dir / "blobs").mkdir(parents=True, exist_ok=True)
            old = self._manifest(bucket)
            new = {}
            for key in list(self.backend.buckets[bucket].keys.keys()):
                obj = self.backend.get_object(bucket, key)
                if obj is None:
                    continue
                if key in old and old[key]["etag"] == obj.etag:
                    new[key] = old[key]
                    continue
                data = obj.value
                digest = hashlib.sha256(data).hexdigest()
                blob = bucket_dir / "blobs" / digest
                if not blob.exists():
                    _atomic_write(blob, data)
                new[key] = {"etag": obj.etag, "sha256": digest, "size": len(data)}
            if new != old or not (bucket_dir / MANIFEST).exists():
                _atomic_write(bucket_dir / MANIFEST, json.dumps(new, indent=1).encode())
            used = {meta["sha256"] for meta in new.values()}
            for blob in (bucket_dir / "blobs").iterdir():
                if blob.name not in used and not blob.name.startswith("."):
                    blob.unlink()


class MirroringApp:
    """WSGI middleware: after a successful write request, mirror the bucket before answering."""

    def __init__(self, app: Any, mirror: DiskMirror) -> None:
        self.app = app
        self.mirror = mirror

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)
        bucket, _, key = unquote(environ.get("PATH_INFO", "/")).lstrip("/").partition("/")
        creating = (
            environ["REQUEST_METHOD"] == "PUT" and not key and not environ.get("QUERY_STRING")
        )
        if creating and bucket and not BUCKET_NAME.fullmatch(bucket):  # refuse it as S3 does
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidBucketName</Code>'
                "<Message>The specified bucket is not valid: bucket names are 3-63 lowercase "
                "letters, digits, dots and hyphens, starting and ending with a letter or digit."
                f"</Message><BucketName>{escape(bucket)}</BucketName></Error>"
            ).encode()
            start_response("400 Bad Request", [("Content-Type", "application/xml")])
            return [body]
        status: list[int] = []

        def record(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, headers, exc_info)

        body = list(self.app(environ, record))
        bucket = unquote(environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0])
        if bucket and status and 200 <= status[0] < 300:
            self.mirror.sync(bucket)
        return body


def serve(host: str, port: int, data: Path, accept_loss: bool = False) -> None:
    """Restore the store from `data`, then serve the S3 API on host:port until killed."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.s3.models import s3_backends
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    mirror = DiskMirror(data, s3_backends[DEFAULT_ACCOUNT_ID]["aws"])
    problems = mirror.check()
    if problems and not accept_loss:
        print(f"The artifact store in {data} lost {len(problems)} object(s):", file=sys.stderr)
        print("\n".join(f"  {line}" for line in problems[:20]), file=sys.stderr)
        sys.exit(EXIT_DAMAGED)
    if problems:
        print(f"Dropped {mirror.forget_lost()} lost object(s) from {data}.", file=sys.stderr)
    count = mirror.restore()
    app = MirroringApp(DomainDispatcherApplication(create_backend_app), mirror)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"S3 store on http://{host}:{port}, {count} object(s) restored from {data}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m mlflow_series.s3store --port N --data DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder that keeps the objects")
    parser.add_argument(
        "--accept-loss", action="store_true", help="start even if stored objects are missing"
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.data, args.accept_loss)


if __name__ == "__main__":
    main()
