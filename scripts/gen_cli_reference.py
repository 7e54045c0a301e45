"""Writes reference/cli.md into the built site from the command registry (mkdocs-gen-files runs it at build time)."""

import mkdocs_gen_files

from retrosearch import cli_reference

with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_reference.markdown())
