"""A real clamd (Debian's clamav-daemon, installed by `make test`) with a signature database
the test writes itself: signature downloads are impossible here, and a hash signature is all a
test needs to make one chosen file "infected"."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
STARTUP_SECONDS = 120
SIGNATURE_NAME = "Test.Image.Marker"


@contextmanager
def clamd(workdir: Path, infected: bytes) -> Iterator[str]:
    """Runs clamd on a unix socket; ``infected`` is the one file its database detects."""
    if not Path(CLAMD).exists():
        raise RuntimeError(f"{CLAMD} is missing: `make test` installs clamav-daemon")
    database = workdir / "db"
    database.mkdir()
    (workdir / "tmp").mkdir()
    # An MD5 hash signature (.hdb): md5:size:name.
    (database / "test.hdb").write_text(
        f"{hashlib.md5(infected).hexdigest()}:{len(infected)}:{SIGNATURE_NAME}\n"  # noqa: S324  # ClamAV's format
    )
    socket_path = workdir / "clamd.sock"
    config = workdir / "clamd.conf"
    config.write_text(
        f"LocalSocket {socket_path}\n"
        f"DatabaseDirectory {database}\n"
        f"TemporaryDirectory {workdir / 'tmp'}\n"
        f"LogFile {workdir / 'clamd.log'}\n"
        "Foreground yes\n"
    )
    process = subprocess.Popen(
        [CLAMD, "--config-file", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log = workdir / "clamd.log"
                raise RuntimeError(
                    "clamd did not start:\n" + (log.read_text() if log.exists() else "")
                )
            time.sleep(0.1)
        yield f"unix:{socket_path}"
    finally:
        process.terminate()
        process.wait(timeout=30)
