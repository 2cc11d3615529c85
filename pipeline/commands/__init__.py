"""One module per subcommand; the order here is the order of ``pipeline --help``."""

from pipeline.commands.download import download
from pipeline.commands.extract import extract
from pipeline.commands.fit import fit
from pipeline.commands.info import info
from pipeline.commands.predict import predict
from pipeline.commands.report import report
from pipeline.commands.subsets import subsets

COMMANDS = [download, extract, fit, report, predict, subsets, info]
