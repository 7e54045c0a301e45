import pytest

from retrosearch.cli import main


@pytest.mark.parametrize("command", ["inspect", "generate", "revise", "select", "sft", "eval", "merge", "run", "demo"])
def test_every_command_prints_its_help(command, capsys):
    """Regression: a '%' in one option's help made `revise --help` crash inside argparse."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: retrosearch" in capsys.readouterr().out
