"""Every model module, imported once so `metadata` knows all tables (for Alembic)."""

from app.auth import models as auth_models
from app.batch import models as batch_models
from app.billing import models as billing_models
from app.core.database import Base
from app.memory import models as memory_models
from app.storage import models as storage_models
from app.usage import models as usage_models

metadata = Base.metadata

__all__ = [
    "auth_models",
    "batch_models",
    "billing_models",
    "memory_models",
    "metadata",
    "storage_models",
    "usage_models",
]
