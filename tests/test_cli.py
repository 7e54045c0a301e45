import shlex

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


@pytest.mark.parametrize(
    ("command", "options", "expected"),
    [
        (
            "revise",
            {"input": "in.jsonl", "bound": False, "gold_from_trace": True, "max_new_tokens": 64},
            "retrosearch revise --input in.jsonl --gold-from-trace --max-new-tokens 64 --no-bound",
        ),
        (
            "eval",
            {"benchmarks": ("aime24", "math500"), "data_dir": "d"},
            "retrosearch eval --benchmarks aime24 math500 --data-dir d",
        ),
        ("merge", {"shards": ("a/0", "b 1"), "output": "m"}, "retrosearch merge a/0 'b 1' --output m"),
        ("run", {"recipe": "r.yaml", "dry_run": True}, "retrosearch run r.yaml --dry-run"),
        ("teacher", {"count": 7}, "retrosearch organism teacher --count 7"),
    ],
)
def test_a_recorded_command_line_reproduces_its_configs(command, options, expected):
    """The manifest's command line: every option away from its default, positional ones bare, and parsed back by the
    CLI it gives the very same configs."""
    from retrosearch.cli import _parser
    from retrosearch.config import merged_options
    from retrosearch.stages.registry import COMMANDS, command_line

    configs = COMMANDS[command].build(options)
    line = command_line(command, tuple(configs))
    assert line == expected
    parsed = _parser().parse_args(shlex.split(line)[1:])
    assert COMMANDS[command].build(merged_options(parsed, None)) == configs
