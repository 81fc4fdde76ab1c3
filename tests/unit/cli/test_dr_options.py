"""``farside dr`` flags: checked combinations and the DR_run options they make."""

from __future__ import annotations

import argparse
import os

import pytest

from farside.cli.dr import options
from farside.cli.dr.failures import DrCliError


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    options.add_flags(p)
    return p.parse_args(list(argv))


def test_flags_become_run_options() -> None:
    req = options.request(
        parse("--lun", "/luns/a", "--lun-dir", "/luns/site-b", "--vapp", "shop", "--vm", "lone", "--power", "paused",
              "--confirm-split", "--source-pool", " p1 "),
        "failover",
    )  # fmt: skip
    assert req.selection == ["shop", "lone"] and req.chosen
    assert options.run_options(req, "http://a:8440", pause=False) == {
        "luns": "/luns/a:/luns/site-b", "select": "shop,lone", "power": "start_paused", "confirm_split": "true",
        "source_pool": "p1", "source_url": "http://a:8440",
    }  # fmt: skip


def test_all_selects_everything_and_the_wizard_pauses() -> None:
    req = options.request(parse("--lun", "/l", "--all", "--split-mirrors"), "failover")
    opts = options.run_options(req, "", pause=True)
    assert opts == {"luns": "/l", "select": "", "split_mirrors": "true", "pause_after": "discover,load,precheck"}
    assert "power" not in opts  # the kind's default: start, or start_paused for a test


def test_relative_luns_mean_what_they_mean_here(tmp_path: object) -> None:
    req = options.request(parse("--lun", "copy"), "test")
    assert req.luns == [os.path.abspath("copy")]


@pytest.mark.parametrize(
    ("argv", "kind", "text"),
    [
        (["--lun", "/l", "--all", "--vm", "x"], "failover", "--all already selects"),
        (["--lun", "/l", "--power", "start"], "test", "never starts VMs running"),
        (["--lun", "/l", "--split-mirrors"], "test", "never splits mirrors"),
        (["--lun", "/a:b"], "failover", "cannot hold ':'"),
    ],
)
def test_bad_combinations_are_refused(argv: list[str], kind: str, text: str) -> None:
    with pytest.raises(DrCliError) as info:
        options.request(parse(*argv), kind)
    assert text in info.value.message and info.value.exit_code == 2


def test_a_script_must_say_where_and_what() -> None:
    with pytest.raises(DrCliError, match="--lun PATH"):
        options.require_scripted(options.request(parse("--all"), "failover"))
    with pytest.raises(DrCliError, match="pass --all, or --vapp"):
        options.require_scripted(options.request(parse("--lun", "/l"), "failover"))
    options.require_scripted(options.request(parse("--lun", "/l", "--vm", "lone"), "failback"))


def test_the_site_declared_down_becomes_the_runs_fencing_option() -> None:
    req = options.request(parse("--lun", "/l", "--all", "--declare-site-down", " Site A "), "failover")
    assert options.run_options(req, "http://a:8440", pause=False)["declare_site_down"] == "Site A"
    with pytest.raises(DrCliError, match="needs no --declare-site-down"):
        options.request(parse("--lun", "/l", "--all", "--declare-site-down", "Site A"), "test")
