"""The bad-input run (tests/bad_inputs.py): every case exits as it must, with one line, no traceback, no
"internal error", nothing left behind and nothing that was there changed."""

import pytest

import bad_inputs


@pytest.fixture(scope="module")
def outcomes() -> dict[str, bad_inputs.Outcome]:
    return {o.case: o for o in bad_inputs._run_child(None)}  # one memory-capped child process runs them all


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=[c.name for c in bad_inputs.CASES])
def test_bad_input_is_handled(case, outcomes, request):
    if case.needs_reference:
        request.getfixturevalue("reference_fixtures")  # skipped without them (a failure under CI)
    outcome = outcomes[case.name]
    assert not bad_inputs.failures(case, outcome), f"{outcome.command}: {outcome.stderr!r}"
