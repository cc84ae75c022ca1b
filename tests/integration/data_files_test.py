"""Data files through the real `spotfunnel serve` command: a --db folder that is missing is created
owner-only, one that cannot be made is one line and exit code 2 (no traceback)."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _serve(db_url: str) -> subprocess.Popen[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.Popen([sys.executable, "-m", "spotfunnel.cli", "serve", "--port", str(port), "--db", db_url],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "80"})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_db_folder_that_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    proc = _serve(f"sqlite:///{blocker}/data/sf.db")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    [line] = [line for line in err.splitlines() if "--db" in line]
    assert f"cannot use {blocker}/data/sf.db as the database" in line and "Not a directory" in line
    assert "pick a file in a folder you can write" in line


def test_an_absolute_db_path_into_a_missing_folder_is_created_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a usual, permissive umask: the modes must not depend on it
    try:
        db_file = tmp_path / "var" / "spotfunnel" / "sf.db"
        proc = _serve(f"sqlite:///{db_file}")
    finally:
        os.umask(old_umask)
    try:
        for _ in range(600):  # bounded: the file is made before the models load
            if db_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert db_file.exists(), proc.communicate(timeout=30) if proc.poll() is not None else "not created in 60 s"
        assert _mode(db_file) == 0o600
        assert _mode(db_file.parent) == 0o700 and _mode(db_file.parent.parent) == 0o700
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
