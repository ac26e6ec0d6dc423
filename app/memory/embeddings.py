"""Text embeddings through LiteLLM (`litellm.aembedding`)."""

from __future__ import annotations

import logging

import litellm
import openai

from app.core.errors import AppError, ServiceUnavailableError
from app.core.settings import Settings, secret_value

logger = logging.getLogger(__name__)

MAX_EMBED_CHARS = 16_000


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
    """The embedding of `text` (EMBEDDING_DIM numbers)."""
    if not settings.embedding_model:
        raise EmbeddingsNotConfiguredError
    if len(text) > MAX_EMBED_CHARS:
        raise TextTooLongError
    try:
        response = await litellm.aembedding(
            model=settings.embedding_model,
            input=[text],
            api_base=settings.embedding_api_base,
            api_key=secret_value(settings.embedding_api_key),
            dimensions=settings.embedding_dim,
            timeout=settings.embedding_timeout_s,
            # Providers without a `dimensions` parameter still answer.
            drop_params=True,
        )
    except (openai.OpenAIError, litellm.exceptions.APIError) as exc:
        logger.warning("embedding call failed", extra={"error": type(exc).__name__})
        raise EmbeddingProviderError from exc
    item = response.data[0]
    raw = item["embedding"] if isinstance(item, dict) else item.embedding
    vector = [float(x) for x in raw]
    if len(vector) != settings.embedding_dim:
        logger.warning(
            "embedding has the wrong size",
            extra={"expected": settings.embedding_dim, "got": len(vector)},
        )
        raise EmbeddingProviderError
    return vector
