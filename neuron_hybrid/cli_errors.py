"""What every subcommand shares: user errors printed without a traceback, and NAME=VALUE options."""
import functools
import json
import sys


class UsageError(ValueError):
    """A command-line option that cannot be used as given (the message says which and how to fix it)."""


def reported(errors=lambda: ()):
    """Decorate a subcommand handler ``fn(args) -> int``: a :class:`UsageError`, a missing file or an exception of
    ``errors()`` (a function returning exception classes, so that the modules defining them load only when the
    command runs) is printed as ``neuron-hybrid <command>: error: <message>`` and the command exits with status 2."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(args):
            try:
                return fn(args)
            except (UsageError, FileNotFoundError, *errors()) as exc:
                print(f"neuron-hybrid {args.command}: error: {exc}", file=sys.stderr)
                return 2

        return run

    return wrap


def parse_value(text: str):
    """A command-line value: a number, a boolean (True/False or true/false), None/null or a JSON list where it
    parses as one, else the text itself."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def assignments(items, option: str, convert=parse_value) -> dict:
    """{NAME: convert(VALUE)} from ``NAME=VALUE`` strings of ``option`` (e.g. "--param"); UsageError otherwise."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise UsageError(f"{option} {it!r}: expected NAME=VALUE")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = convert(v.strip())
        except ValueError:
            raise UsageError(f"{option} {it!r}: {v.strip()!r} is not a valid value") from None
    return out
