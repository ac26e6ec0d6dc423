"""The storage domain's dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.dependencies import from_state
from app.storage.blobs import BlobStore

BlobStoreDep = Annotated[BlobStore, Depends(from_state("blob_store"))]
