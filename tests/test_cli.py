import pytest

from retrosearch.cli import main


@pytest.mark.parametrize("command", ["inspect", "generate", "revise", "select", "sft", "eval", "merge", "run", "demo"])
def test_every_command_prints_its_help(command, capsys):
    """Regression: a '%' in one option's help made `revise --help` crash inside argparse."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: retrosearch" in capsys.readouterr().out


def test_a_broken_yaml_config_gets_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: [unclosed\n")
    assert main(["revise", "--config", str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    expected = f"{broken}:2:1: not valid YAML (expected ',' or ']', but got '<stream end>'); fix the file"
    assert error == f"retrosearch: error: {expected}"
    assert main(["run", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
