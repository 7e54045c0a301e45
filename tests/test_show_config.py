"""`retrosearch show-config RUN`: from a number to the exact command. The command line it prints reproduces the run
(run again, it finds the same settings and returns the finished run), and a recipe's folder shows every stage."""

from __future__ import annotations

import json
import shlex

from retrosearch.cli import main
from retrosearch.stages.decontaminate import DecontaminateConfig, decontaminate
from retrosearch.stages.teacher import TeacherConfig, export_teacher_run


def test_the_printed_command_line_reproduces_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export_teacher_run(TeacherConfig(output="teacher", count=6, split="train", seed=4), quiet=True)
    config = DecontaminateConfig(input="teacher/traces.jsonl", output="clean", against=("organism",), ngram=6)
    first = decontaminate(config, quiet=True)
    capsys.readouterr()
    assert main(["show-config", "clean"]) == 0
    lines = capsys.readouterr().out.splitlines()
    manifest = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert lines[0] == f"clean: decontaminate, finished {manifest['finished']}"
    command = lines[1].removeprefix("  command line: ")
    assert command == manifest["command_line"] and "--ngram 6" in command and "--against organism" in command
    assert lines[2] == f"  config hash:  {manifest['config_hash']}"
    assert lines[3].startswith("  inputs:       input ") and lines[4].startswith("  versions:     python ")
    assert shlex.split(command)[0] == "retrosearch"
    assert main(shlex.split(command)[1:]) == 0  # the same settings: the finished run, not a refusal
    assert json.loads((tmp_path / "clean" / "summary.json").read_text()) == first
    assert main([*shlex.split(command)[1:], "--ngram", "5"]) != 0  # other settings are refused, by name
    assert "other settings (DecontaminateConfig.ngram)" in capsys.readouterr().err


def test_a_recipes_folder_shows_each_stage_and_json_on_request(tmp_path, capsys):
    export_teacher_run(TeacherConfig(output=str(tmp_path / "run" / "teacher"), count=3), quiet=True)
    (tmp_path / "run" / "manifest.json").write_text(
        json.dumps({"command": "run", "command_line": "retrosearch run r.yaml"})
    )
    capsys.readouterr()
    assert main(["show-config", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f"{tmp_path / 'run'}: run, not finished", "  command line: retrosearch run r.yaml"]
    assert f"{tmp_path / 'run' / 'teacher'}: teacher, finished " in out
    assert main(["show-config", str(tmp_path / "run"), "--json"]) == 0
    manifests = json.loads(capsys.readouterr().out)
    assert list(manifests) == [str(tmp_path / "run"), str(tmp_path / "run" / "teacher")]
    assert main(["show-config", str(tmp_path)]) != 0
    assert "no manifest.json; give a run folder that retrosearch wrote" in capsys.readouterr().err
