"""Schemathesis against the session server's own /openapi.json: schema-valid and schema-breaking
requests on every endpoint, bounded so it fits CI. Nothing may answer 5xx, hang, or answer a
status code, content type or body the document does not declare; the server stays healthy.

Bodies get a served model name (otherwise nearly every request would stop at the 404) and small
generation lengths (so the run's time is bounded; lengths past the context are tested elsewhere);
adapter management only ever touches names starting `fuzz-`, so the other tests' adapters stay.

Schemathesis' own pytest entry (`from_fixture`) does not run under pytest 9, so each operation's
strategy is driven here by Hypothesis, one subtest per operation and mode.
"""

from __future__ import annotations

import random

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from tests.conftest import API_KEY

MODELS = ("base", "lora-a", "prompt-a", "tool-lora")
LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
EXAMPLES = 30  # per operation and mode


def servable(case, mode: GenerationMode) -> None:
    """A generated case with a served model and, if schema-valid, short outputs (a breaking
    case keeps its other fields: clamping one could repair what made it invalid)."""
    body = case.body
    if isinstance(body, dict):
        rng = random.Random(str(body))
        if isinstance(body.get("model"), str):
            body["model"] = rng.choice(MODELS)
        if mode is GenerationMode.POSITIVE:
            for name in LENGTH_FIELDS:
                if isinstance(body.get(name), int) and body[name] > 8:
                    body[name] = 8
            if isinstance(body.get("n"), int) and body["n"] > 2:
                body["n"] = 2
        if isinstance(body.get("name"), str):  # POST /v1/adapters
            body["name"] = "fuzz-" + body["name"]
    if isinstance((case.path_parameters or {}).get("name"), str):  # DELETE /v1/adapters/{name}
        case.path_parameters["name"] = "fuzz-" + case.path_parameters["name"]


def contract_test(operation, mode: GenerationMode, url: str):
    """A Hypothesis test of `operation`'s cases in `mode` against the server at `url`."""
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def keeps_its_contract(case):
        servable(case, mode)
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                             timeout=60)
        # A 504 is the documented answer to a request's own deadline (`request_timeout`, which
        # the fuzzer sets as low as 5e-324 s); any other 5xx is a bug.
        deadline = isinstance(case.body, dict) and case.body.get("request_timeout") is not None
        assert response.status_code < 500 or (response.status_code == 504 and deadline), (
            f"{response.status_code}: {response.text[:500]}")
        case.validate_response(
            response,
            # A schema-valid request may still break a rule no schema states (a prompt longer
            # than the context, logit_bias keys outside the vocabulary): a 4xx, not a bug.
            excluded_checks=[positive_data_acceptance, not_a_server_error])
    return keeps_its_contract


def test_every_endpoint_keeps_its_contract(server, subtests):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        # Schema-breaking cases need a body to break: a bare GET or a free-form path name has
        # none, and Hypothesis would report that as unsatisfiable.
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * bool(operation.body)
        for mode in modes:
            with subtests.test(msg=f"{operation.label} {mode.value}"):
                contract_test(operation, mode, server.url)()


def test_healthy_after_the_fuzzing(http):
    assert http.get("/health").status_code == 200
    r = http.post("/v1/completions", json={"model": "base", "prompt": "hi", "max_tokens": 2})
    assert r.status_code == 200
