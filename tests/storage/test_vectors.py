"""`/storage/vectors`: encrypted items searched by cosine within the user's own items."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.storage.vectors import DERIVED_DIMENSIONS, derived_vector
from tests.billing.conftest import Account, register
from tests.storage.conftest import StoredBlobs, b64, rows, sha256, subscriber

VECTORS = "/api/v1/storage/vectors"


def item(item_id: str, data: bytes, vector: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": item_id, "blob": b64(data), "checksum": sha256(data)}
    if vector is not None:
        body["vector"] = vector
    return body


async def upsert(client: httpx.AsyncClient, account: Account, *items: dict[str, Any]) -> int:
    response = await client.post(
        f"{VECTORS}/upsert", json={"vectors": list(items)}, headers=account.auth
    )
    assert response.status_code == 200, response.text
    return int(response.json()["upserted"])


async def search(client: httpx.AsyncClient, account: Account, **query: Any) -> httpx.Response:
    return await client.post(f"{VECTORS}/search", json=query, headers=account.auth)


def hits(response: httpx.Response) -> list[tuple[str, float, bytes]]:
    assert response.status_code == 200, response.text
    return [
        (hit["id"], round(hit["score"], 4), base64.b64decode(hit["blob"]))
        for hit in response.json()["results"]
    ]


async def test_search_ranks_the_users_items_by_cosine_and_returns_their_blobs(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    assert (
        await upsert(
            client,
            pro,
            item("east", b"enc-east", [1.0, 0.0, 0.0]),
            item("north-east", b"enc-ne", [1.0, 1.0, 0.0]),
            item("west", b"enc-west", [-1.0, 0.0, 0.0]),
            item("up", b"enc-up", [0.0, 0.0, 5.0]),
        )
        == 4
    )

    found = hits(await search(client, pro, query_vector=[2.0, 0.1, 0.0], top_k=3))

    assert found == [
        ("east", 0.9988, b"enc-east"),
        ("north-east", 0.7415, b"enc-ne"),
        ("up", 0.0, b"enc-up"),
    ]
    assert {stored.read(key) for key in stored.listing()} == {
        b"enc-east",
        b"enc-ne",
        b"enc-west",
        b"enc-up",
    }


async def test_an_upsert_replaces_an_item_with_the_same_id(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    await upsert(client, pro, item("a", b"old", [1.0, 0.0]), item("b", b"other", [0.0, 1.0]))

    await upsert(client, pro, item("a", b"new and longer", [0.0, 1.0]))

    found = hits(await search(client, pro, query_vector=[0.0, 1.0], top_k=5))
    assert sorted(found) == [("a", 1.0, b"new and longer"), ("b", 1.0, b"other")]
    assert {stored.read(key) for key in stored.listing()} == {b"new and longer", b"other"}
    assert await rows(app, "SELECT count(*), sum(size_bytes) FROM storage_vectors") == [(2, 19)]


async def test_search_never_sees_another_users_items(
    app: FastAPI, client: httpx.AsyncClient, pro: Account
) -> None:
    other = await subscriber(app, client, "pro")
    await upsert(client, pro, item("mine", b"mine", [1.0, 0.0]))
    await upsert(client, other, item("theirs", b"theirs", [1.0, 0.0]))

    mine = hits(await search(client, pro, query_vector=[1.0, 0.0]))
    theirs = hits(await search(client, other, query_vector=[1.0, 0.0]))

    assert mine == [("mine", 1.0, b"mine")]
    assert theirs == [("theirs", 1.0, b"theirs")]


async def test_each_user_has_one_dimension_and_a_mismatch_is_422(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    other = await subscriber(app, client, "pro")
    await upsert(client, pro, item("a", b"a", [1.0, 0.0, 0.0]))
    await upsert(client, other, item("b", b"b", [1.0, 0.0]))  # another user, another dimension

    stored_again = await client.post(
        f"{VECTORS}/upsert", json={"vectors": [item("c", b"c", [1.0, 0.0])]}, headers=pro.auth
    )
    mixed = await client.post(
        f"{VECTORS}/upsert",
        json={"vectors": [item("d", b"d", [1.0, 0.0, 0.0]), item("e", b"e", [1.0])]},
        headers=pro.auth,
    )
    searched = await search(client, pro, query_vector=[1.0, 0.0])

    assert stored_again.status_code == searched.status_code == 422
    detail = (
        "Your vectors have 3 dimensions; this one has 2 (delete them all to change the dimension)"
    )
    assert stored_again.json() == searched.json() == {"detail": detail}
    assert (mixed.status_code, mixed.json()) == (
        422,
        {"detail": "The vectors of one upsert must have one dimension, not [1, 3]"},
    )
    assert len(stored.listing()) == 2  # a and b: nothing of the refused upserts is kept


async def test_the_dimension_can_change_once_every_vector_is_deleted(
    client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    await upsert(client, pro, item("a", b"a", [1.0, 0.0, 0.0]))

    deleted = await client.request(
        "DELETE", VECTORS, json={"ids": ["a", "never-stored"]}, headers=pro.auth
    )
    await upsert(client, pro, item("b", b"b", [0.0, 1.0]))

    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert hits(await search(client, pro, query_vector=[0.0, 2.0])) == [("b", 1.0, b"b")]
    assert len(stored.listing()) == 1


async def test_an_item_without_a_vector_is_found_by_its_exact_blob_only(
    app: FastAPI, client: httpx.AsyncClient, pro: Account
) -> None:
    await upsert(
        client,
        pro,
        item("report", b"encrypted report"),
        item("copy", b"encrypted report"),
        item("draft", b"encrypted report, edited"),
        item("shared", b"encrypted report", [1.0, 0.0]),
    )

    duplicates = hits(await search(client, pro, query_blob=b64(b"encrypted report"), top_k=10))
    nothing = hits(await search(client, pro, query_blob=b64(b"encrypted repors"), top_k=10))

    # The SHA-256-derived vector keeps no similarity: a one-byte change is unrelated.
    assert duplicates == [
        ("copy", 1.0, b"encrypted report"),
        ("report", 1.0, b"encrypted report"),
    ]
    assert nothing == []
    stored_vector = await rows(
        app, "SELECT embedding::text FROM storage_vectors WHERE item_id = 'report'"
    )
    assert len(derived_vector(b"encrypted report")) == DERIVED_DIMENSIONS
    assert stored_vector[0][0].count(",") == DERIVED_DIMENSIONS - 1


async def test_a_checksum_mismatch_stores_none_of_the_upsert(
    app: FastAPI, client: httpx.AsyncClient, pro: Account, stored: StoredBlobs
) -> None:
    good = item("good", b"good", [1.0])
    bad = {**item("bad", b"bad", [1.0]), "checksum": sha256(b"not bad")}

    response = await client.post(
        f"{VECTORS}/upsert", json={"vectors": [good, bad]}, headers=pro.auth
    )

    assert response.status_code == 400
    assert "Checksum mismatch" in response.json()["detail"]
    assert stored.listing() == set()
    assert await rows(app, "SELECT item_id FROM storage_vectors") == []


@pytest.mark.parametrize(
    ("vectors", "detail"),
    [
        (
            [item("x", b"x", [1.0]), item("x", b"y", [1.0])],
            "Each item id may appear once in an upsert",
        ),
        (
            [item("z", b"z", [0.0, 0.0])],
            "A vector of zeros has no direction for cosine similarity to compare",
        ),
    ],
    ids=["duplicate-id", "zero-vector"],
)
async def test_unstorable_upserts_are_422(
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    vectors: list[dict[str, Any]],
    detail: str,
) -> None:
    response = await client.post(f"{VECTORS}/upsert", json={"vectors": vectors}, headers=pro.auth)

    assert (response.status_code, response.json()) == (422, {"detail": detail})
    assert stored.listing() == set()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"vectors": []}, ["body", "vectors"]),
        ({"vectors": [item("a", b"a", ["one"])]}, ["body", "vectors", 0, "vector"]),
        ({"vectors": [{**item("a", b"a"), "blob": "%%%"}]}, ["body", "vectors", 0, "blob"]),
        ({"vectors": [item("bad id/../", b"a")]}, ["body", "vectors", 0, "id"]),
        ({"vectors": [item("a", b"a", [])]}, ["body", "vectors", 0, "vector"]),
    ],
    ids=["empty", "string-in-vector", "invalid-base64", "bad-id", "no-dimensions"],
)
async def test_malformed_upserts_are_422(
    client: httpx.AsyncClient,
    pro: Account,
    stored: StoredBlobs,
    body: dict[str, Any],
    where: list[object],
) -> None:
    response = await client.post(f"{VECTORS}/upsert", json=body, headers=pro.auth)

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors
    assert all(error["loc"][: len(where)] == where for error in errors), errors
    assert stored.listing() == set()


async def test_not_a_number_is_refused_in_a_vector(client: httpx.AsyncClient, pro: Account) -> None:
    body = b'{"vectors": [{"id": "a", "blob": "YQ==", "checksum": "%s", "vector": [NaN]}]}'

    response = await client.post(
        f"{VECTORS}/upsert",
        content=body % sha256(b"a").encode(),
        headers={**pro.auth, "Content-Type": "application/json"},
    )

    assert response.status_code == 422


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"query_vector": [1.0], "query_blob": "YQ=="},
        {"query_vector": None, "query_blob": "YQ=="},
        {"query_vector": [1.0], "top_k": 0},
    ],
    ids=["neither", "both", "null", "top-k-zero"],
)
async def test_a_search_needs_exactly_one_query_and_a_sane_top_k(
    client: httpx.AsyncClient, pro: Account, query: dict[str, Any]
) -> None:
    response = await search(client, pro, **query)

    assert response.status_code == 422


async def test_a_zero_query_vector_points_nowhere_and_finds_nothing(
    client: httpx.AsyncClient, pro: Account
) -> None:
    await upsert(client, pro, item("a", b"a", [1.0, 0.0]))

    assert hits(await search(client, pro, query_vector=[0.0, 0.0])) == []


async def test_vectors_are_compared_by_direction_whatever_their_magnitude(
    client: httpx.AsyncClient, pro: Account
) -> None:
    # pgvector computes in 32-bit floats: as sent, the first would not fit (a 500),
    # the second's norm would overflow (scored as orthogonal) and the third would
    # round to the zero vector (a score of NaN, sent as null).
    await upsert(
        client,
        pro,
        item("huge", b"h", [3.5e38, 0.0, 0.0]),
        item("long", b"l", [1e20, 1e20, 0.0]),
        item("tiny", b"t", [0.0, 1e-46, 0.0]),
    )

    towards_xy = hits(await search(client, pro, query_vector=[1.0, 1.0, 0.0]))
    towards_x = hits(await search(client, pro, query_vector=[1e-46, 0.0, 0.0]))
    past_float32 = hits(await search(client, pro, query_vector=[0.0, 1e300, 0.0]))

    assert towards_xy == [("long", 1.0, b"l"), ("huge", 0.7071, b"h"), ("tiny", 0.7071, b"t")]
    assert towards_x == [("huge", 1.0, b"h"), ("long", 0.7071, b"l"), ("tiny", 0.0, b"t")]
    assert past_float32 == [("tiny", 1.0, b"t"), ("long", 0.7071, b"l"), ("huge", 0.0, b"h")]


async def test_a_free_user_cannot_upsert_but_can_search_and_delete(
    client: httpx.AsyncClient, stored: StoredBlobs
) -> None:
    free = await register(client)

    upserted = await client.post(
        f"{VECTORS}/upsert", json={"vectors": [item("a", b"a")]}, headers=free.auth
    )
    searched = await search(client, free, query_vector=[1.0])
    deleted = await client.request("DELETE", VECTORS, json={"ids": ["a"]}, headers=free.auth)

    assert upserted.status_code == 403
    assert "(free)" in upserted.json()["detail"]
    assert (searched.status_code, searched.json()) == (200, {"results": []})
    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert stored.listing() == set()


async def test_the_embeddings_route_is_still_there(client: httpx.AsyncClient, pro: Account) -> None:
    # `/storage/vectors/embed` (memory's, the server's model) sits beside these routes.
    response = await client.post(f"{VECTORS}/embed", json={"text": "hello"}, headers=pro.auth)

    assert response.status_code == 503
    assert "EMBEDDING_MODEL" in response.json()["detail"]
