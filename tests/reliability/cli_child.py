"""Many ``pipeline`` commands in one child process, under the memory cap its parent set (``RLIMIT_DATA``).

``python -m tests.reliability.cli_child JOBS.json`` runs each argument list of JOBS.json through the real
click CLI (its one-line error handling included) and prints one JSON line: per job, the exit code, the output
and any exception that escaped the CLI. One process for all jobs: torch is imported once, not per command.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

JOB_SECONDS = 120


class JobTimeout(BaseException):
    """A command still running after JOB_SECONDS (raised from SIGALRM): unbounded work."""


def _alarm(signum, frame):
    raise JobTimeout()


def main(jobs: list[list[str]]) -> list[dict]:
    from click.testing import CliRunner

    from pipeline.cli import cli

    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for args in jobs:
        signal.alarm(JOB_SECONDS)
        try:
            result = CliRunner().invoke(cli, args)
            escaped = result.exception if not isinstance(result.exception, SystemExit) else None
            results.append({"exit_code": result.exit_code, "output": result.output,
                            "exception": None if escaped is None else f"{type(escaped).__name__}: {escaped}"})
        except JobTimeout:
            results.append({"exit_code": None, "output": "", "exception": f"still running after {JOB_SECONDS} s"})
        finally:
            signal.alarm(0)
    return results


if __name__ == "__main__":
    print(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
