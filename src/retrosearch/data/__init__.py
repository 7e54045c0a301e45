"""Data in and out: `inputs` reads samples and problems, `outputs` writes every file a command writes."""
