"""Deployments: which backend a model name routes to, at what price, for which organizations.

Pure records and input validation; :mod:`creditgate.gateway.deployment_store` persists them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import InvalidInput, PayloadTooLarge
from creditgate.gateway.prices import PriceList, parse_prices

BACKENDS: Final = ("openai", "onnx")
KINDS: Final = ("chat", "completion", "embedding", "predict")
TIMEOUT_DEFAULT_S: Final = 60
TIMEOUT_MAX_S: Final = 600
CONCURRENCY_DEFAULT: Final = 64
CONCURRENCY_MAX: Final = 10_000
MAX_TOKENS_DEFAULT: Final = 4096
MAX_TOKENS_DEFAULT_MAX: Final = 1_000_000
ORGS_MAX: Final = 10_000
MODEL_BYTES_MAX: Final = 64 * 1024 * 1024
_NAME: Final = re.compile(r"^[\w.:@/+-]{1,200}$")
_FIELDS: Final = frozenset({"name", "backend", "kind", "base_url", "upstream_model", "api_key",
                            "api_key_env", "prices", "scope", "orgs", "timeout_s", "concurrency_max",
                            "max_tokens_default", "model_base64", "metadata"})


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    name: str
    backend: str
    kind: str
    base_url: str | None
    upstream_model: str | None
    api_key_env: str | None
    api_key_encrypted: str | None
    prices: PriceList
    scope: str
    orgs: frozenset[str] | None
    timeout_ms: int
    concurrency_max: int
    max_tokens_default: int
    model_sha256: str | None
    metadata: dict[str, Any]
    created_at_us: int
    updated_at_us: int

    def allows(self, org_id: str) -> bool:
        return self.orgs is None or org_id in self.orgs

    def to_public(self) -> dict[str, Any]:
        """What the API shows: everything but the credential itself."""
        from creditgate.clock import iso

        return {
            "id": self.id, "name": self.name, "backend": self.backend, "kind": self.kind,
            "base_url": self.base_url, "upstream_model": self.upstream_model,
            "api_key_env": self.api_key_env, "has_stored_api_key": self.api_key_encrypted is not None,
            "prices": self.prices.to_dict(), "scope": self.scope,
            "orgs": sorted(self.orgs) if self.orgs is not None else None,
            "timeout_s": self.timeout_ms / 1000, "concurrency_max": self.concurrency_max,
            "max_tokens_default": self.max_tokens_default, "model_sha256": self.model_sha256,
            "metadata": self.metadata, "created_at": iso(self.created_at_us),
            "updated_at": iso(self.updated_at_us),
        }


def check_fields(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", param=unknown[0])
    return data


def validate(data: dict[str, Any], *, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn create (or, with ``current`` row values, update) input into column values."""
    check_fields(data)
    merged_backend = data.get("backend", (current or {}).get("backend"))
    values: dict[str, Any] = {}
    if current is None or "name" in data:
        values["name"] = _name(data.get("name"), "name")
    if current is None:
        if merged_backend not in BACKENDS:
            raise InvalidInput(f"backend must be one of {', '.join(BACKENDS)}", param="backend")
        values["backend"] = merged_backend
    elif "backend" in data and data["backend"] != current["backend"]:
        raise InvalidInput("backend cannot change; create a new deployment", param="backend")
    if current is None or "kind" in data:
        kind = data.get("kind") or ("predict" if merged_backend == "onnx" else "chat")
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", param="kind")
        values["kind"] = kind
    if "base_url" in data or (current is None and merged_backend == "openai"):
        values["base_url"] = _base_url(data.get("base_url"))
        _check_credential_follows(values["base_url"], data, current)
    if "upstream_model" in data or current is None:
        upstream = data.get("upstream_model")
        values["upstream_model"] = _name(upstream, "upstream_model") if upstream else None
    if "api_key_env" in data:
        env = data["api_key_env"]
        if env is not None and not (isinstance(env, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", env)):
            raise InvalidInput("api_key_env must name an environment variable", param="api_key_env")
        values["api_key_env"] = env
    if "api_key" in data:
        values["api_key_plain"] = _optional_text(data["api_key"], "api_key", 4096)
    if current is None or "prices" in data:
        if "prices" not in data:
            raise InvalidInput("prices is required", param="prices")
        values["prices"] = parse_prices(data["prices"])
    if current is None or "scope" in data:
        scope = data.get("scope", "inference")
        if scope not in ("inference", "training"):
            raise InvalidInput("scope must be inference or training", param="scope")
        values["scope"] = scope
    if "orgs" in data or current is None:
        values["orgs"] = _orgs(data.get("orgs"))
    if "timeout_s" in data or current is None:
        values["timeout_ms"] = _timeout_ms(data.get("timeout_s", TIMEOUT_DEFAULT_S))
    if "concurrency_max" in data or current is None:
        values["concurrency_max"] = _integer(data.get("concurrency_max", CONCURRENCY_DEFAULT),
                                             "concurrency_max", CONCURRENCY_MAX)
    if "max_tokens_default" in data or current is None:
        values["max_tokens_default"] = _integer(data.get("max_tokens_default", MAX_TOKENS_DEFAULT),
                                                "max_tokens_default", MAX_TOKENS_DEFAULT_MAX)
    if "model_base64" in data:
        values["model_bytes"] = decode_model(data["model_base64"])
    if "metadata" in data:
        if not isinstance(data["metadata"], dict):
            raise InvalidInput("metadata must be an object", param="metadata")
        values["metadata"] = data["metadata"]
    return values


def decode_model(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise InvalidInput("model_base64 must be the .onnx file in base64", param="model_base64")
    if len(text) > MODEL_BYTES_MAX * 4 // 3 + 4:
        raise PayloadTooLarge(f"the model is larger than {MODEL_BYTES_MAX} bytes", param="model_base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("model_base64 is not valid base64", param="model_base64") from None


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(f"{field} must be 1 to 200 letters, digits or . _ : @ / + -", param=field)
    return value


def _base_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s]{1,490}$", value):
        raise InvalidInput("base_url must be an http:// or https:// URL", param="base_url")
    return value.rstrip("/")


def _check_credential_follows(base_url: str, data: dict[str, Any], current: dict[str, Any] | None) -> None:
    """A stored key goes only to the host it was given for.

    Repointing a deployment that holds an encrypted key would otherwise send that key to whatever
    host the new URL names, which is a way to read a credential the API never shows.
    """
    if current is None or current.get("api_key_encrypted") is None or "api_key" in data:
        return
    if base_url != current.get("base_url"):
        raise InvalidInput("changing base_url of a deployment with a stored api_key needs the "
                           "api_key again (or null to drop it)", param="api_key")


def _optional_text(value: Any, field: str, length_max: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= length_max:
        raise InvalidInput(f"{field} must be a string of at most {length_max} characters", param=field)
    return value


def _orgs(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) > ORGS_MAX
            or not all(isinstance(item, str) and 0 < len(item) <= 200 for item in value)):
        raise InvalidInput(f"orgs must be a list of at most {ORGS_MAX} organization ids", param="orgs")
    return frozenset(value)


def _timeout_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= TIMEOUT_MAX_S:
        raise InvalidInput(f"timeout_s must be a number of seconds from 0 to {TIMEOUT_MAX_S}",
                           param="timeout_s")
    return max(1, int(value * 1000))


def _integer(value: Any, field: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"{field} must be an integer from 1 to {maximum}", param=field)
    return value
