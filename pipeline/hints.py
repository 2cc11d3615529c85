"""What to do about a cache error, in the words of the command that met it.

The cache says what is wrong with a file (its error type carries a ``remedy``); only the CLI knows which
command and option fix it: ``pipeline extract`` rebuilds with ``--force``, the other commands name
``pipeline extract`` itself (their own ``--force`` means something else).
"""

from __future__ import annotations

EXTRACT_OPTION = {"split": "--splits {name}", "template_set": "--templates {name}",
                  "positions": "--subset-shots/--subset-seeds for these subsets"}


def hint(error: Exception, command: str | None) -> str | None:
    """The fix to append to ``error``'s message when ``command`` met it, or None."""
    remedy = getattr(error, "remedy", None)
    extracting = command == "extract"
    if remedy == "rebuild":
        return "pass --force to rebuild it" if extracting else "rebuild it with pipeline extract --force"
    if remedy == "resume":
        return "rerun pipeline extract: it resumes from the last complete block"
    if remedy == "wait":
        return "wait for it to finish or pass --wait SECONDS"
    if remedy == "precision":
        return "try --precision fp32"
    if remedy == "store_dtype":
        return "use --store-dtype float32"
    if remedy == "extract":
        what, name = getattr(error, "what", "file"), getattr(error, "name", None)
        if what == "file":
            return "run pipeline extract first"
        if what in EXTRACT_OPTION:
            option = EXTRACT_OPTION[what].format(name=name)
            other = " or use another subset" if what == "positions" else ""
            return f"extract it with pipeline extract {option}{other}"
        return "run pipeline extract with the option that writes it"
    return None


def with_hint(error: Exception, command: str | None) -> str:
    """``error``'s one-line message, followed by the fix when there is one."""
    fix = hint(error, command)
    return f"{error}; {fix}" if fix else str(error)
