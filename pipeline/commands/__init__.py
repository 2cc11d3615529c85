"""One module per subcommand; the order here is the order of ``pipeline --help``."""

from pipeline.commands.info import info

COMMANDS = [info]
