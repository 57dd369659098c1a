"""The gateway's tables: deployments (what a model name routes to, and at what price)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from creditgate.storage.schema import ID, metadata

deployments = Table(
    "deployments", metadata,
    Column("id", ID, primary_key=True),
    # The model name clients send (`model` in an OpenAI request); unique across deployments.
    Column("name", String(200), nullable=False, unique=True),
    Column("backend", String(20), nullable=False),
    # What the model does: chat, completion, embedding (OpenAI upstreams) or predict (ONNX).
    Column("kind", String(20), nullable=False, server_default="chat"),
    Column("base_url", String(500), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    # Upstream credentials: either the name of an environment variable, or a Fernet token made
    # with CREDITGATE_SECRET_KEY. Neither is ever returned by the API.
    Column("api_key_env", String(200), nullable=True),
    Column("api_key_encrypted", Text, nullable=True),
    # {"input_tokens": "150", "output_tokens": "600", "per": 1000000}: credits per `per` units.
    Column("prices", Text, nullable=False),
    Column("scope", String(20), nullable=False, server_default="inference"),
    # JSON list of organization ids allowed to use it; NULL means every organization.
    Column("orgs", Text, nullable=True),
    Column("timeout_ms", Integer, nullable=False),
    Column("concurrency_max", Integer, nullable=False),
    Column("max_tokens_default", Integer, nullable=False),
    # ONNX backend: the model file itself, so that every gateway process can load it.
    Column("model_bytes", LargeBinary, nullable=True),
    Column("model_sha256", String(64), nullable=True),
    Column("metadata", Text, nullable=False, server_default="{}"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("backend IN ('openai','onnx')", name="backend_known"),
    CheckConstraint("kind IN ('chat','completion','embedding','predict')", name="kind_known"),
    CheckConstraint("scope IN ('inference','training')", name="scope_known"),
    CheckConstraint("timeout_ms > 0", name="timeout_positive"),
    CheckConstraint("concurrency_max > 0", name="concurrency_positive"),
    CheckConstraint("max_tokens_default > 0", name="max_tokens_default_positive"),
    CheckConstraint("backend <> 'onnx' OR model_bytes IS NOT NULL", name="onnx_has_model"),
    CheckConstraint("backend <> 'openai' OR base_url IS NOT NULL", name="openai_has_base_url"),
)

gateway_rate_limits = Table(
    "gateway_rate_limits", metadata,
    # "key:<key id>", "org:<org id>" or "default"; the most specific one applies.
    Column("subject", String(80), primary_key=True),
    Column("requests_per_min", Integer, nullable=True),
    Column("tokens_per_min", BigInteger, nullable=True),
    Column("concurrent_max", Integer, nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("requests_per_min IS NULL OR requests_per_min >= 0", name="rpm_nonnegative"),
    CheckConstraint("tokens_per_min IS NULL OR tokens_per_min >= 0", name="tpm_nonnegative"),
    CheckConstraint("concurrent_max IS NULL OR concurrent_max >= 0", name="concurrent_nonnegative"),
)
