"""Every stage command, one module each, named as the command (generate, revise, merge, select, sft, eval, teacher,
organism_train), beside the skeleton they share: the registry of commands, the run folder and its template."""
