"""``farside mirror`` on the command line: clear messages and exit codes, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from farside.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["mirror", *args])
    out, err = capsys.readouterr()
    return code, out, err


class TestCommands:
    def test_a_whole_life(self, capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path) -> None:
        """create, sync, status --json, split, snapshot, delete, each with a one-line outcome."""
        state = ["--state-dir", str(tmp_path / "state")]
        target = tmp_path / "site-b" / "lun1"
        target.parent.mkdir()
        assert run(capsys, "create", *state, "m", "--source", str(source), "--target", str(target))[0] == 0
        code, out, _ = run(capsys, "sync", *state, "m")
        assert code == 0 and "cycle 1 complete" in out
        code, out, _ = run(capsys, "status", *state, "m", "--json")
        report = json.loads(out)
        assert (report["state"], report["cycle"], report["daemon_pid"]) == ("replicating", 1, None)
        assert report["rpo_seconds"] >= 0
        assert run(capsys, "split", *state, "m")[0] == 0
        code, out, _ = run(capsys, "status", *state)
        assert "m: split" in out
        assert run(capsys, "snapshot", *state, "m", str(tmp_path / "snap"))[0] == 0
        assert (tmp_path / "snap" / "full.img").is_file()
        assert run(capsys, "delete", *state, "m")[0] == 0

    def test_state_dir_from_environment(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --state-dir, FARSIDE_MIRROR_DIR names the state directory."""
        monkeypatch.setenv("FARSIDE_MIRROR_DIR", str(tmp_path / "env-state"))
        (tmp_path / "env-state").mkdir()
        code, out, _ = run(capsys, "status")
        assert code == 0 and str(tmp_path / "env-state") in out


class TestErrors:
    def test_unknown_mirror(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A name that is not a mirror says where it looked and how to list mirrors."""
        code, _, err = run(capsys, "split", "--state-dir", str(tmp_path), "nope")
        assert code == 2
        assert "MIRROR_UNKNOWN" in err and "farside mirror status" in err and "Traceback" not in err

    def test_bad_source(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A source that is not a directory is refused before anything is written."""
        state = tmp_path / "state"
        code, _, err = run(
            capsys, "create", "--state-dir", str(state), "m", "--source", str(tmp_path / "x"), "--target", str(tmp_path)
        )
        assert code == 2 and "is not a directory" in err
        assert not state.exists()

    def test_bad_name(self, capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path) -> None:
        """Names are checked: they become directory names."""
        code, _, err = run(capsys, "create", "--state-dir", str(tmp_path), "../x", "--source", str(source),
                           "--target", str(tmp_path / "t"))  # fmt: skip
        assert code == 2 and "mirror name" in err

    def test_reverse_while_replicating(self, capsys: pytest.CaptureFixture[str], mirrors: object, mirror: str,
                                       tmp_path: Path) -> None:  # fmt: skip
        """reverse of a replicating mirror says to split first."""
        code, _, err = run(capsys, "reverse", "--state-dir", str(tmp_path / "state"), mirror)
        assert code == 4 and "split the mirror before reversing it" in err

    def test_a_state_dir_that_is_not_there(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """Only create makes a state directory; every other command refuses one that is missing."""
        (tmp_path / "file").write_text("")
        for action in (["status"], ["run"], ["sync", "m"], ["split", "m"]):
            code, out, err = run(capsys, *action, "--state-dir", str(tmp_path / "missing"))
            assert code == 2 and out == "" and "Traceback" not in err
            assert err.strip() == (
                f"farside: the mirror state directory {tmp_path / 'missing'} does not exist: give the --state-dir "
                "your mirrors use (or set FARSIDE_MIRROR_DIR); 'farside mirror create' makes a new one"
            )
        code, _, err = run(capsys, "status", "--state-dir", str(tmp_path / "file"))
        assert code == 2 and "is not a directory" in err

    def test_a_snapshot_needs_its_parent(
        self, capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path
    ) -> None:
        state = ["--state-dir", str(tmp_path / "state")]
        assert run(capsys, "create", *state, "m", "--source", str(source), "--target", str(tmp_path / "copy"))[0] == 0
        code, _, err = run(capsys, "snapshot", *state, "m", str(tmp_path / "no" / "snap"))
        assert code == 2 and f"create it first (mkdir -p {tmp_path / 'no'})" in err


def test_a_second_daemon_says_it_waits_as_a_standby(source: Path, tmp_path: Path) -> None:
    from farside.mirror.daemon import Daemon
    from farside.mirror.pair import Mirrors

    mirrors = Mirrors(tmp_path / "state")
    mirrors.create("m", source, tmp_path / "copy", 3600.0, None)
    first, told = Daemon(mirrors, []), []
    assert first._hold("m")
    second = Daemon(mirrors, [], notice=told.append)
    for _ in range(2):
        second._round()
    assert len(told) == 1 and f"pid {os.getpid()}" in told[0] and told[0].startswith("standby: ")
    second._release("m")
    first._release("m")
