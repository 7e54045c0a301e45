"""Commands that chain stages: run (a YAML recipe of stages) and demo (the main job on the organism)."""
