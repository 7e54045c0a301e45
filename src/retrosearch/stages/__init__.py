"""The skeleton every command shares: the registry of commands, the run folder and its template."""
