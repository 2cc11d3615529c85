"""One module per subcommand; the order here is the order of ``pipeline --help``."""

from pipeline.commands.extract import extract
from pipeline.commands.info import info
from pipeline.commands.report import report

COMMANDS = [extract, report, info]
