"""What botocore works out again on every call from inputs that do not change, remembered.

Both are per client, applied when the client is opened (storage/clients.py), and leave what is
sent, and every event hook, exactly as botocore has them (tests/unit/test_botocore_memo.py):

- **The User-Agent.** botocore builds a call's User-Agent twice (when the request is made, and
  again just before it is signed, to add the features the call used) from parts fixed when the
  client was made and the call's feature ids. Remembered per feature set: 3 % of a read's CPU.
- **The endpoint.** botocore resolves every call's endpoint through the service's rule set and
  remembers the answer per set of inputs. S3's inputs include the object's `Key` (and `Prefix`,
  `CopySource`), which no rule reads: every presign for a new key missed the memo and ran the
  whole rule set, about 7 % of an upload URL's CPU. The inputs no rule mentions are left out of
  the call, so the memo answers; a rule set that starts reading one keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.context import get_context
from botocore.useragent import UserAgentString

Client = TypeVar("Client")


class _RememberedUserAgent(UserAgentString):
    _MAX_REMEMBERED = 64  # features come from a small fixed vocabulary; bounded all the same

    def to_string(self) -> str:
        # The key is what botocore's feature component is built from; the other parts are fixed.
        context = get_context()
        features = frozenset(getattr(self, "_client_features", None) or ()).union(
            context.features if context is not None else ()
        )
        remembered: dict[frozenset[str], str] = self.__dict__.setdefault("_remembered", {})
        found = remembered.get(features)
        if found is None:
            found = super().to_string()
            if len(remembered) < self._MAX_REMEMBERED:
                remembered[features] = found
        return found


def parameters_no_rule_reads(ruleset: dict[str, Any]) -> frozenset[str]:
    """The rule set's declared parameters whose names appear nowhere in its rules: not as a
    reference, not in a template, not even as a word (the test is deliberately coarse)."""
    rules = repr(ruleset.get("rules", []))
    return frozenset(
        name
        for name in ruleset.get("parameters", {})
        if not re.search(rf"\b{re.escape(name)}\b", rules)
    )


_UNREAD: dict[tuple[str, str], frozenset[str]] = {}


def _unread_parameters(loader: Any, service: str, api_version: str) -> frozenset[str]:
    """``parameters_no_rule_reads`` of a service's rule set, worked out once per process: the
    search through S3's rules costs more than opening the client."""
    key = (service, api_version)
    if key not in _UNREAD:
        ruleset = loader.load_service_model(service, "endpoint-rule-set-1", api_version)
        _UNREAD[key] = parameters_no_rule_reads(ruleset)
    return _UNREAD[key]


def _without(unread: frozenset[str], resolve: Callable[..., Any]) -> Callable[..., Any]:
    def resolve_endpoint(**parameters: Any) -> Any:
        return resolve(**{k: v for k, v in parameters.items() if k not in unread})

    return resolve_endpoint


def remember_repeated_work(client: Client) -> Client:
    """``client`` with its User-Agent and its endpoints remembered (see the module's text)."""
    boto: Any = client
    creator = boto._user_agent_creator
    if type(creator) is UserAgentString:
        # Its handler stays botocore's own, bound to this same object.
        creator.__class__ = _RememberedUserAgent
    resolver = getattr(boto, "_ruleset_resolver", None)
    provider = getattr(resolver, "_provider", None)
    if provider is not None:
        model = boto.meta.service_model
        unread = _unread_parameters(boto._loader, model.service_name, model.api_version)
        if unread:
            # The instance attribute wraps the class's memoised method, whose memo now hits.
            provider.resolve_endpoint = _without(unread, provider.resolve_endpoint)
    return client
