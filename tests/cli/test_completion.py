"""Shell completion: typer's ``--show-completion`` / ``--install-completion``."""

from __future__ import annotations

from typer.testing import CliRunner

from coordinator.cli import app

runner = CliRunner()


def test_show_completion_prints_a_bash_script() -> None:
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="saga")
    assert result.exit_code == 0, result.output
    assert "complete" in result.stdout and "_SAGA_COMPLETE=complete_bash" in result.stdout


def test_completion_names_the_commands() -> None:
    # What the script asks the program when the user presses TAB after `saga top`.
    result = runner.invoke(
        app,
        [],
        prog_name="saga",
        env={"_SAGA_COMPLETE": "complete_bash", "COMP_WORDS": "saga top", "COMP_CWORD": "1"},
    )
    assert result.stdout.split() == ["topology"]
