"""Decoding the embeddings providers send in base64."""

from __future__ import annotations

import base64
import struct

import pytest

from app.memory.embeddings import EmbeddingProviderError, _decoded


def test_base64_float32s_decode_to_the_vector() -> None:
    encoded = base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()

    assert _decoded(encoded) == [0.5, -1.25, 3.0]


@pytest.mark.parametrize("encoded", ["not base64 at all!", base64.b64encode(b"\x00" * 5).decode()])
def test_a_garbled_embedding_is_the_providers_failure(encoded: str) -> None:
    with pytest.raises(EmbeddingProviderError):
        _decoded(encoded)
