"""Storage settings: S3 without a bucket is refused at start-up, not silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.settings import Settings
from app.storage.blobs import BlobStore


def test_s3_settings_without_a_bucket_are_refused() -> None:
    with pytest.raises(ValidationError, match="S3_ENDPOINT_URL set without S3_BUCKET"):
        Settings(_env_file=None, s3_endpoint_url="http://127.0.0.1:9000")


def test_without_a_bucket_blobs_live_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)

    store = BlobStore.from_settings(settings)

    assert store.description == f"disk {tmp_path.resolve() / 'blobs'}"
    assert (tmp_path / "blobs").is_dir()


def test_a_bucket_selects_s3() -> None:
    settings = Settings(
        _env_file=None, s3_bucket="backups", s3_endpoint_url="https://s3.example.org"
    )

    store = BlobStore.from_settings(settings)

    assert store.description == "bucket backups at https://s3.example.org"
