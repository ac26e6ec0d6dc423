"""devclient answers batch runs from real files, and only from the folders it shares."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devclient.agent_files import MAX_ERRORS, RunFiles, SharedFolders, run_frames
from devclient.client import NO_SHARED_FOLDERS, DeviceClient
from devclient.store import LocalStore
from tests.devclient.scripted_peer import ScriptedPeer, scripted_peer

CONFIG_MD = {"file_extensions": [".md", ".TXT"]}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    (shared / "sub" / ".hidden").mkdir(parents=True)
    (shared / "a.md").write_text("alpha")
    (shared / "B.txt").write_text("beta")
    (shared / "sub" / "c.MD").write_text("gamma")
    (shared / "sub" / ".hidden" / "d.md").write_text("hidden")
    (shared / ".e.md").write_text("hidden too")
    (shared / "f.pdf").write_text("not asked for")
    (shared / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "secret.md").write_text("do not send")
    return shared


def names(found: RunFiles) -> list[str]:
    return [file["name"] for file in found.files]


def test_matching_files_are_read_recursively_in_path_order(home: Path) -> None:
    found = SharedFolders([home]).read({"paths": [str(home)], **CONFIG_MD})

    assert names(found) == ["B.txt", "a.md", "c.MD"]
    assert found.files[1] == {
        "path": str(home / "a.md"),
        "name": "a.md",
        "content": "alpha",
        "metadata": found.files[1]["metadata"],
    }
    assert found.files[1]["metadata"]["size"] == 5
    assert found.errors == [f"{home / 'latin1.md'}: not UTF-8 text; not read"]


def test_folders_outside_the_shared_ones_are_refused(home: Path, tmp_path: Path) -> None:
    private = tmp_path / "private"
    escape = home / ".." / "private"

    found = SharedFolders([home]).read({"paths": [str(private), str(escape), "/nope"], **CONFIG_MD})

    assert found.files == []
    assert found.errors == [
        f"{private}: not in a folder shared with batch agents",
        f"{escape}: not in a folder shared with batch agents",
        "/nope: not in a folder shared with batch agents",
    ]


def test_a_link_leading_out_of_the_shared_folder_is_not_followed(
    home: Path, tmp_path: Path
) -> None:
    (home / "link.md").symlink_to(tmp_path / "private" / "secret.md")

    found = SharedFolders([home]).read({"paths": [str(home)], "file_extensions": [".md"]})

    assert "secret.md" not in names(found)
    assert "do not send" not in json.dumps(found.files)
    assert f"{home / 'link.md'}: links outside the shared folders; not read" in found.errors


def test_a_sub_folder_of_a_shared_folder_may_be_asked_for(home: Path) -> None:
    found = SharedFolders([home]).read({"paths": [str(home / "sub")], **CONFIG_MD})

    assert names(found) == ["c.MD"]


def test_files_are_packed_into_frames_under_the_budget() -> None:
    files = [
        {"path": f"/f{n}.md", "name": f"f{n}.md", "content": "x" * 300, "metadata": {}}
        for n in range(5)
    ]
    huge = {"path": "/huge.md", "name": "huge.md", "content": "y" * 2000, "metadata": {}}

    frames = run_frames("r1", RunFiles(files=[*files, huge], errors=["e1"]), budget_bytes=1000)

    *data, complete = frames
    assert all(len(json.dumps(frame).encode()) <= 1000 for frame in data)
    assert [len(frame["files"]) for frame in data] == [2, 2, 1]
    assert complete == {
        "type": "agent_complete",
        "run_id": "r1",
        "files_read": 5,
        "errors": ["e1", "/huge.md: too large to send in one frame; not sent"],
    }


def test_errors_are_capped_as_the_protocol_allows() -> None:
    found = RunFiles(files=[], errors=[f"e{n}" * 600 for n in range(150)])

    [complete] = run_frames("r1", found)

    assert len(complete["errors"]) == MAX_ERRORS
    assert complete["errors"][-1] == "… and 51 more"
    assert all(len(error) <= 1000 for error in complete["errors"])


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    async with scripted_peer() as listening:
        yield listening


async def test_the_client_answers_agent_run_with_data_then_complete(
    peer: ScriptedPeer, home: Path
) -> None:
    store = LocalStore(":memory:")
    client = await DeviceClient.connect(
        server=peer.url,
        token="t",
        device_id="desk",
        store=store,
        shared_folders=SharedFolders([home]),
    )
    async with client:
        connection = await peer.accept()
        await connection.recv()  # hello
        run = {"type": "agent_run", "run_id": "r1", "agent_id": "a1", "config": {
            "paths": [str(home)], "file_extensions": [".md"], "prompt_template": "",
            "data_types": ["tasks"],
        }}  # fmt: skip
        await connection.send(run)

        data = await connection.recv()
        complete = await connection.recv()

    assert client.agent_runs == [run]
    assert (data["type"], data["run_id"]) == ("agent_data", "r1")
    assert [f["name"] for f in data["files"]] == ["a.md", "c.MD"]
    assert complete["type"] == "agent_complete"
    assert complete["files_read"] == 2
    assert len(complete["errors"]) == 1  # latin1.md


async def test_a_client_sharing_no_folder_says_so_at_once(peer: ScriptedPeer) -> None:
    client = await DeviceClient.connect(
        server=peer.url, token="t", device_id="desk", store=LocalStore(":memory:")
    )
    async with client:
        connection = await peer.accept()
        await connection.recv()
        await connection.send(
            {"type": "agent_run", "run_id": "r1", "agent_id": "a", "config": {"paths": ["/"]}}
        )

        complete = await connection.recv()

    assert complete == {
        "type": "agent_complete",
        "run_id": "r1",
        "files_read": 0,
        "errors": [NO_SHARED_FOLDERS],
    }
