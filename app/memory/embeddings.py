"""Text embeddings through LiteLLM (`litellm.aembedding`)."""

from __future__ import annotations

import base64
import logging
import sys
import time
import warnings
from array import array

import litellm
import openai

from app.core.errors import AppError, ServiceUnavailableError
from app.core.settings import Settings, secret_value
from app.usage.ledger import ROLE_EMBEDDING, account, account_failure

logger = logging.getLogger(__name__)

MAX_EMBED_CHARS = 16_000

# Asked for base64, the OpenAI SDK keeps the string where its model says
# `list[float]`, and LiteLLM's logging dumps that model: pydantic warns about
# the string on every call. The vector itself is decoded below.
warnings.filterwarnings(
    "ignore",
    message=r"(?s)Pydantic serializer warnings:.*field_name='embedding'",
    category=UserWarning,
)


class EmbeddingsNotConfiguredError(ServiceUnavailableError):
    detail = (
        "No embedding model is configured: set EMBEDDING_MODEL (a LiteLLM embedding model "
        "such as openai/text-embedding-3-small), and EMBEDDING_API_BASE / EMBEDDING_API_KEY "
        "as the provider needs."
    )


class EmbeddingProviderError(AppError):
    status_code = 502
    detail = "The embedding provider failed; try again later."


class TextTooLongError(AppError):
    status_code = 413
    detail = f"Text is limited to {MAX_EMBED_CHARS} characters."


async def embed(settings: Settings, text: str) -> list[float]:
    """The embedding of `text` (EMBEDDING_DIM numbers).

    The call is accounted (role `embedding`) to the request or run bound to
    the context (`app.usage.ledger`).
    """
    model = settings.embedding_model
    if not model:
        raise EmbeddingsNotConfiguredError
    if len(text) > MAX_EMBED_CHARS:
        raise TextTooLongError
    started = time.perf_counter()
    try:
        response = await litellm.aembedding(
            model=model,
            input=[text],
            api_base=settings.embedding_api_base,
            api_key=secret_value(settings.embedding_api_key),
            dimensions=settings.embedding_dim,
            # 1,536 floats as base64 rather than JSON numbers: a third of the CPU of a call.
            encoding_format="base64",
            timeout=settings.embedding_timeout_s,
            # Providers without `dimensions` or `encoding_format` still answer (in floats).
            drop_params=True,
        )
    except (openai.OpenAIError, litellm.exceptions.APIError) as exc:
        account_failure(role=ROLE_EMBEDDING, model=model)
        logger.warning("embedding call failed", extra={"error": type(exc).__name__})
        raise EmbeddingProviderError from exc
    usage = getattr(response, "usage", None)
    account(
        role=ROLE_EMBEDDING,
        model=model,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=0,
        duration_s=time.perf_counter() - started,
        prices=settings.llm_prices,
    )
    item = response.data[0]
    raw = item["embedding"] if isinstance(item, dict) else item.embedding
    vector = _decoded(raw) if isinstance(raw, str) else [float(x) for x in raw]
    if len(vector) != settings.embedding_dim:
        logger.warning(
            "embedding has the wrong size",
            extra={"expected": settings.embedding_dim, "got": len(vector)},
        )
        raise EmbeddingProviderError
    return vector


def _decoded(encoded: str) -> list[float]:
    """A base64 embedding: little-endian float32s, as OpenAI-compatible APIs send them."""
    floats = array("f")
    try:
        floats.frombytes(base64.b64decode(encoded, validate=True))
    except ValueError as exc:  # not base64, or not a whole number of floats
        raise EmbeddingProviderError from exc
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tolist()
