"""Every numeric argument of every subcommand is bounded: nan, inf and absurd values are one-line usage errors."""

import argparse

import pytest

from apollo_restore.cli import build_parser, main


def _numeric_options() -> list[tuple[str, str, object]]:
    found = []
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            numeric = action.type in (int, float) or getattr(action.type, "__module__", "").endswith(".arguments")
            if numeric:
                found.append((name, action.option_strings[-1] if action.option_strings else action.dest, action.type))
    return found


OPTIONS = _numeric_options()


def test_no_numeric_argument_is_unbounded():
    assert len(OPTIONS) >= 25
    unbounded = [(name, option) for name, option, kind in OPTIONS if kind in (int, float)]
    assert not unbounded, f"use cli.arguments.bounded for: {unbounded}"


@pytest.mark.parametrize("command,option", [(c, o) for c, o, _ in OPTIONS if o.startswith("-")])
def test_nan_inf_and_absurd_values_are_refused_in_one_line(command, option, capsys):
    for value in ("nan", "inf", "-inf", "1e30", "-1e30", "ten"):
        assert main([command, f"{option}={value}"]) == 2, (command, option, value)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and option in err and "must be" in err, err


def test_block_seconds_are_bounded_to_a_useful_range(capsys):
    for value in ("0.001", "0.5", "601"):
        assert main(["restore", "x.wav", "--block-seconds", value]) == 2
        assert "must be a number from 1 to 600" in capsys.readouterr().err
