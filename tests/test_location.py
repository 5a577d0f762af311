"""Locations: local paths, file:// and memory:// URLs behave alike."""

from __future__ import annotations

import uuid

import zarr

from stores import location


def test_file_urls_become_local_paths(tmp_path):
    assert location.normalize(f"file://{tmp_path}/") == str(tmp_path)
    assert location.is_local(f"file://{tmp_path}") and not location.is_local("memory://x")
    assert location.join(f"file://{tmp_path}", "a", "b.zarr") == str(tmp_path / "a" / "b.zarr")


def test_find_stores_the_same_under_a_path_and_its_url(tmp_path):
    for name in ("p/a.zarr", "p/b.zarr", "q/c.zarr"):
        zarr.open_group(str(tmp_path / name), mode="w").create_group("inner")
    (tmp_path / "p" / "not-a-store.zarr").mkdir()
    want = [str(tmp_path / n) for n in ("p/a.zarr", "p/b.zarr", "q/c.zarr")]
    assert location.find_stores(tmp_path) == want
    assert location.find_stores(f"file://{tmp_path}") == want


def test_memory_urls_round_trip():
    root = f"memory://{uuid.uuid4().hex}"
    zarr.open_group(location.join(root, "p", "a.zarr"), mode="w")
    assert location.find_stores(root) == [f"{root}/p/a.zarr"]
    assert location.is_store(f"{root}/p/a.zarr") and not location.is_store(f"{root}/p")
    with location.open_file(location.join(root, "p", "report.md"), "w") as f:
        f.write("text")
    with location.open_file(f"{root}/p/report.md", "r") as f:
        assert f.read() == "text"
    location.remove(f"{root}/p/a.zarr")
    assert location.find_stores(root) == []
