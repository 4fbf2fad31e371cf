"""prefopt.manifest: what a saved folder holds, and which file no longer matches it."""

import json

import pytest
import torch
from safetensors.torch import save_file

from prefopt import manifest


def _saved_folder(folder):
    """A folder as a trainer leaves one: safetensors weights, a torch.save file, a JSON config."""
    folder.mkdir(parents=True)
    save_file({"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(8, 8)}, folder / "model.safetensors")
    torch.save({"state": {0: torch.zeros(32)}}, folder / "optimizer.pt")
    (folder / "config.json").write_text('{"r": 8}')
    return folder


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_the_manifest_names_every_file_with_its_size_and_checksum_and_an_untouched_folder_verifies(tmp_path):
    folder = _saved_folder(tmp_path / "ckpt")
    manifest.write(folder, folder / "MANIFEST", step=7)
    written = json.loads((folder / "MANIFEST").read_text())
    assert written["step"] == 7 and sorted(written["files"]) == ["config.json", "model.safetensors", "optimizer.pt"]
    for name, entry in written["files"].items():
        assert entry["size"] == (folder / name).stat().st_size
        assert entry[manifest.CHECKSUM] == manifest.checksum(folder / name) and len(entry[manifest.CHECKSUM]) == 32
    assert manifest.find_damage(folder, folder / "MANIFEST") is None
    assert not (folder / "MANIFEST.tmp").exists()


def test_a_truncated_file_is_named_with_its_size_now_and_when_saved(tmp_path):
    folder = _saved_folder(tmp_path / "ckpt")
    manifest.write(folder, folder / "MANIFEST")
    size = (folder / "optimizer.pt").stat().st_size
    _truncate(folder / "optimizer.pt", 100)
    damage = manifest.find_damage(folder, folder / "MANIFEST", checksums=False)  # sizes alone find it
    assert damage == manifest.Damage("optimizer.pt", f"holds 100 bytes, {size:,} when it was saved (cut short)")


def test_changed_bytes_of_the_same_size_are_found_by_the_checksum_only(tmp_path):
    folder = _saved_folder(tmp_path / "ckpt")
    manifest.write(folder, folder / "MANIFEST")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # bit rot inside a tensor: the header still describes the file exactly
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert manifest.find_damage(folder, folder / "MANIFEST", checksums=False) is None
    damage = manifest.find_damage(folder, folder / "MANIFEST")
    assert damage.name == "model.safetensors" and "other bytes than when it was saved" in damage.problem


def test_a_missing_file_and_an_unreadable_manifest_are_named(tmp_path):
    folder = _saved_folder(tmp_path / "ckpt")
    manifest.write(folder, folder / "MANIFEST")
    (folder / "config.json").unlink()
    assert str(manifest.find_damage(folder, folder / "MANIFEST")) == "config.json is missing"
    (folder / "MANIFEST").write_text('{"files": {"model.safet')  # cut short
    assert manifest.find_damage(folder, folder / "MANIFEST").name == "MANIFEST"


@pytest.mark.parametrize("marker", [None, "step 20\n"], ids=["no marker", "a marker without a record"])
def test_without_a_manifest_truncated_weights_are_found_by_their_structure(tmp_path, marker):
    folder = _saved_folder(tmp_path / "ckpt")
    if marker:
        (folder / "MANIFEST").write_text(marker)
    assert manifest.find_damage(folder, folder / "MANIFEST") is None
    size = (folder / "model.safetensors").stat().st_size
    _truncate(folder / "model.safetensors", size - 10)
    damage = manifest.find_damage(folder, folder / "MANIFEST")
    assert damage.name == "model.safetensors"
    assert damage.problem == f"holds {size - 10:,} bytes, its safetensors header describes {size:,} (cut short)"
    _truncate(folder / "model.safetensors", 20)  # inside the header: its length points past the end
    assert "its header length points past its end" in manifest.find_damage(folder, folder / "MANIFEST").problem

    (folder / "model.safetensors").unlink()
    _truncate(folder / "optimizer.pt", (folder / "optimizer.pt").stat().st_size // 2)
    damage = manifest.find_damage(folder, folder / "MANIFEST")
    assert damage.name == "optimizer.pt" and "the end of the file is missing" in damage.problem
