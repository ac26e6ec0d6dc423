"""`update_core_memory`: the keys it takes are the keys a user can forget one by one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tools.memory import update_core_memory


@pytest.mark.parametrize("key", ["..", ".", "a/b", "/etc", "tea?", "", "x" * 101])
async def test_a_key_no_url_can_name_is_refused_before_anything_is_stored(key: str) -> None:
    # DELETE /memory/core/{key}: a client resolves "." and ".." away (".." would
    # become DELETE /memory, everything), and a slash splits the key.
    with pytest.raises(ValidationError):
        await update_core_memory.ainvoke({"key": key, "value": "tea"})


@pytest.mark.parametrize("key", ["timezone", "work hours", "préférence_café", "v1.2-style"])
def test_ordinary_keys_are_accepted(key: str) -> None:
    update_core_memory.args_schema.model_validate({"key": key, "value": "tea"})  # type: ignore[union-attr]
