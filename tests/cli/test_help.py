"""Every option says what it does and its default; ``qaev search --help`` is grouped;
docs/cli.md is the generated reference; ``qaev cache`` shows and clears the cache."""
import pathlib

import click

from qaev.cli.helptext import walk
from qaev.cli.main import cli, main
from qaev.cli.progress import legend_text
from qaev.cli.reference import render
from qaev.cli.search import SECTIONS, search

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _options(command):
    ctx = click.Context(command, info_name="qaev", show_default=True)
    for param in command.params:
        if isinstance(param, click.Option):
            yield param, param.get_help_record(ctx)


def test_every_option_of_every_command_has_help_and_shows_its_default():
    missing, checked = [], 0
    for path, command in walk(cli):
        for param, (names, text) in _options(command):
            checked += 1
            if not param.help:
                missing.append(f"{' '.join(path)} {names}: no help")
            elif "[default:" not in text and "[required]" not in text:
                missing.append(f"{' '.join(path)} {names}: no default shown")
    assert checked > 60, "the walk found too few options to show anything"
    assert not missing, "\n".join(missing)


def test_the_check_catches_an_option_without_help_or_default():
    command = click.Command("x", params=[click.Option(["--plain"], default=None)])
    (param, (_, text)), = _options(command)
    assert not param.help and "[default:" not in text


def test_search_help_is_grouped_by_purpose_with_every_option_in_a_group(capsys):
    grouped = {name for _, names in SECTIONS for name in names}
    options = {p.name for p in search.params if isinstance(p, click.Option)}
    assert options <= grouped, f"options in no group: {sorted(options - grouped)}"
    assert main(["search", "--help"]) == 0
    text = capsys.readouterr().out
    positions = [text.index(f"\n{title}:\n") for title, _ in SECTIONS]
    assert positions == sorted(positions)
    assert text.index("\n  --max-drop FLOAT") > text.index("\nGoal: objectives and constraints:\n")
    assert "Other options:" in text and text.count("--") > 40
    assert legend_text() in " ".join(text.split())  # the progress line's legend


def test_the_cli_reference_is_current():
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == render(), "docs/cli.md is stale: run `python -m qaev.cli.reference > docs/cli.md`"
    assert "## `qaev search`" in written and "[default: 20]" in written


def test_cache_shows_its_folder_and_size_and_clears_only_its_own(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "calib").mkdir(parents=True)
    (tmp_path / "cache" / "calib" / "a.npz").write_bytes(b"x" * 2_500_000)
    (tmp_path / "cache" / "mine").mkdir()
    (tmp_path / "cache" / "mine" / "keep.txt").write_text("keep")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path / 'cache'}" in out and "calib" in out and "2.5 MB" in out
    assert main(["cache", "clear"]) == 0
    assert "freed 2.5 MB" in capsys.readouterr().out
    assert not (tmp_path / "cache" / "calib").exists() and (tmp_path / "cache" / "mine" / "keep.txt").is_file()
    assert "QAEV_CACHE" in cli.commands["cache"].help
