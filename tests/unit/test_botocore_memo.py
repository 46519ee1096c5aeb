"""What storage/botocore_memo.py remembers is what botocore would compute, input for input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import botocore.session
import pytest
from botocore.context import start_as_current_context
from botocore.useragent import UserAgentString, register_feature_id

from image_service.settings import Settings
from image_service.storage.botocore_memo import parameters_no_rule_reads, remember_repeated_work
from image_service.storage.clients import aws_config


def _client(service: str = "dynamodb", **config: object) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=aws_config(Settings(**config)),  # type: ignore[arg-type]
    )


def _agent(client: object, *features: str) -> str:
    with start_as_current_context():
        for feature in features:
            register_feature_id(feature)
        return client._user_agent_creator.to_string()  # type: ignore[attr-defined]


def _parts(agent: str) -> list[str]:
    """The agent's components, the feature list's codes sorted: botocore joins a set, so its own
    order varies with how the set was built."""
    return [
        "m/" + ",".join(sorted(part[2:].split(","))) if part.startswith("m/") else part
        for part in agent.split(" ")
    ]


FEATURE_SETS = [(), ("RETRY_MODE_STANDARD",), ("WAITER",), ("RETRY_MODE_STANDARD", "PAGINATOR")]


def test_the_remembered_agent_is_botocores_for_every_feature_set_in_any_order() -> None:
    plain, remembered = _client(), remember_repeated_work(_client())
    assert type(plain._user_agent_creator) is UserAgentString  # type: ignore[attr-defined]
    for _ in range(2):  # the second round is served from the memo
        for features in FEATURE_SETS + [tuple(reversed(f)) for f in FEATURE_SETS]:
            expected = _agent(plain, *features)
            assert _parts(_agent(remembered, *features)) == _parts(expected)
            assert "app/image-service" in expected


def test_features_set_on_the_client_itself_are_part_of_the_memo_key() -> None:
    remembered = remember_repeated_work(_client())
    before = _agent(remembered)
    remembered._user_agent_creator.set_client_features({"S3_TRANSFER"})  # type: ignore[attr-defined]
    after = _agent(remembered)
    assert _parts(after) != _parts(before)
    plain = _client()
    plain._user_agent_creator.set_client_features({"S3_TRANSFER"})  # type: ignore[attr-defined]
    assert _parts(after) == _parts(_agent(plain))


def _ruleset(client: Any) -> dict[str, Any]:
    model = client.meta.service_model
    ruleset: dict[str, Any] = client._loader.load_service_model(
        model.service_name, "endpoint-rule-set-1", model.api_version
    )
    return ruleset


def test_s3s_rules_never_read_the_key_prefix_or_copy_source_and_the_others_read_all() -> None:
    assert parameters_no_rule_reads(_ruleset(_client("s3"))) == {"Key", "Prefix", "CopySource"}
    assert parameters_no_rule_reads(_ruleset(_client("dynamodb"))) == frozenset()
    assert parameters_no_rule_reads(_ruleset(_client("sqs"))) == frozenset()


def test_a_parameter_a_rule_mentions_in_a_template_or_reference_is_kept() -> None:
    ruleset = {
        "parameters": {"Key": {}, "Bucket": {}, "Region": {}, "Unused": {}},
        "rules": [
            {"conditions": [{"fn": "isSet", "argv": [{"ref": "Region"}]}]},
            {"endpoint": {"url": "https://{Bucket}.example/{Key#path}"}},
        ],
    }
    assert parameters_no_rule_reads(ruleset) == {"Unused"}


@contextmanager
def freeze_signing_time() -> Iterator[None]:
    """Both clients sign at the same instant, so their URLs can be compared."""
    now = datetime(2026, 12, 6, 23, 59, 58, tzinfo=UTC)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=now),
        mock.patch("botocore.signers.get_current_datetime", return_value=now),
    ):
        yield


def _evaluations(client: Any) -> list[object]:
    """Counts the provider's runs of its rule set (the work its memo saves)."""
    ruleset = client._ruleset_resolver._provider.ruleset
    runs: list[object] = []
    evaluate = ruleset.evaluate

    def counted(parameters: dict[str, Any]) -> Any:
        runs.append(parameters)
        return evaluate(parameters)

    ruleset.evaluate = counted
    return runs


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_presigned_urls_are_botocores_and_a_new_key_no_longer_runs_the_rule_set(
    style: str,
) -> None:
    plain = _client("s3", s3_addressing_style=style)
    remembered = remember_repeated_work(_client("s3", s3_addressing_style=style))
    plain_runs, remembered_runs = _evaluations(plain), _evaluations(remembered)
    keys = [f"users/u{n}/images/{n}/original" for n in range(20)] + ["odd key/é?#&=+"]
    for key in keys:
        for operation in ("put_object", "get_object"):
            params = {"Bucket": "images-bucket", "Key": key}
            with freeze_signing_time():
                expected = plain.generate_presigned_url(operation, Params=params, ExpiresIn=300)
                got = remembered.generate_presigned_url(operation, Params=params, ExpiresIn=300)
            assert got == expected
    assert len(plain_runs) == len(keys)  # each new key ran the whole rule set
    assert len(remembered_runs) == 1


def test_another_bucket_still_resolves_its_own_endpoint() -> None:
    remembered = remember_repeated_work(_client("s3", s3_addressing_style="virtual"))
    first = remembered.generate_presigned_url("get_object", Params={"Bucket": "one", "Key": "k"})
    second = remembered.generate_presigned_url("get_object", Params={"Bucket": "two", "Key": "k"})
    assert first.startswith("https://one.s3.amazonaws.com/k?")
    assert second.startswith("https://two.s3.amazonaws.com/k?")
