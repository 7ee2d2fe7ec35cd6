"""Hardening of the command line: outputs checked before any work (never an input overwritten),
options checked by argparse, one-line messages."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backend.__main__ import main
from backend.io.npz import load_npz, save_npz
from backend.rig import RigError
from conftest import make_capsule_chain


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def rigs(tmp_path) -> Path:
    folder = tmp_path / "rigs"
    folder.mkdir()
    for i in range(2):
        save_npz(make_capsule_chain(2 + i, segments=8, rings=8), folder / f"r{i}.npz")
    return folder


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- item 2: painted inputs are kept
def test_predict_into_its_own_folder_is_refused(rigs, capsys):
    before = digest(rigs)
    assert main(["predict", str(rigs), str(rigs), "--mode", "geodesic"]) == 2
    assert "also the input folder" in one_line_error(capsys)
    assert digest(rigs) == before
    assert main(["predict", str(rigs), str(rigs / ".." / rigs.name), "--mode", "geodesic"]) == 2
    assert digest(rigs) == before


def test_skin_onto_its_input_is_refused(rigs, capsys):
    src = rigs / "r0.npz"
    before = digest(rigs)
    assert main(["skin", str(src), str(src), "--mode", "geodesic"]) == 2
    assert "also an input" in one_line_error(capsys)
    link = rigs.parent / "link.npz"
    link.symlink_to(src)
    assert main(["skin", str(src), str(link), "--mode", "geodesic"]) == 2
    assert digest(rigs) == before and load_npz(src).weights is not None


# ---------------------------------------------------------------- item 5: outputs checked first
def test_outputs_under_a_file_or_onto_a_folder_are_refused_before_any_work(rigs, tmp_path, capsys, monkeypatch):
    import backend.cli.skin as skin

    def no_work(args):
        raise AssertionError("the predictor was built before the output was checked")

    monkeypatch.setattr(skin, "make_predictor", no_work)
    monkeypatch.setattr("backend.cli.predict.make_predictor", no_work)
    a_file = tmp_path / "note.txt"
    a_file.write_text("x")
    assert main(["skin", str(rigs / "r0.npz"), str(a_file / "out.npz"), "--mode", "geodesic"]) == 2
    assert "is a file, not a folder" in one_line_error(capsys)
    folder = tmp_path / "taken.npz"
    folder.mkdir()
    assert main(["skin", str(rigs / "r0.npz"), str(folder), "--mode", "geodesic"]) == 2
    assert "existing folder" in one_line_error(capsys)
    assert main(["skin", str(rigs / "r0.npz"), str(tmp_path / "x.obj"), "--mode", "geodesic"]) == 2
    assert "unsupported output type" in one_line_error(capsys)
    assert main(["predict", str(rigs), str(a_file), "--mode", "geodesic"]) == 2
    assert "existing file, not a folder" in one_line_error(capsys)
    assert main(["predict", str(rigs), str(a_file / "sub"), "--mode", "geodesic"]) == 2
    assert "is a file, not a folder" in one_line_error(capsys)


def test_synth_and_export_check_their_outputs(tmp_path, capsys):
    a_file = tmp_path / "note.txt"
    a_file.write_text("x")
    assert main(["synth", "--count", "1", "--out", str(a_file)]) == 2
    assert "existing file, not a folder" in one_line_error(capsys)
    assert main(["synth", "--count", "1", "--sheet", str(a_file / "s.png")]) == 2
    assert "is a file, not a folder" in one_line_error(capsys)
    ckpt = tmp_path / "g.pt"
    ckpt.write_text("x")
    assert main(["export", str(ckpt), str(a_file / "m.onnx")]) == 2
    assert "is a file, not a folder" in one_line_error(capsys)
    assert a_file.read_text() == "x"


# ---------------------------------------------------------------- item 7: options checked by argparse
@pytest.mark.parametrize("option, value", [("--prune", "5"), ("--prune", "1"), ("--prune", "nan"),
                                           ("--max-influences", "-1"), ("--threads", "0")])
@pytest.mark.parametrize("command", ["skin", "predict"])
def test_bad_options_fail_in_argparse(rigs, tmp_path, capsys, command, option, value):
    args = [str(rigs / "r0.npz"), str(tmp_path / "o.npz")] if command == "skin" else [str(rigs), str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stop:
        main([command, *args, option, value, "--mode", "geodesic"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- item 10: messages
def test_a_text_file_named_npz_is_not_called_a_pickle(tmp_path):
    fake = tmp_path / "notes.npz"
    fake.write_text("vertices: 1 2 3\n")
    with pytest.raises(RigError, match="not an .npz archive") as err:
        load_npz(fake)
    assert "pickle" not in str(err.value)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(RigError, match="empty"):
        load_npz(tmp_path / "empty.npz")


def test_exporting_a_training_state_names_the_file_to_use(tmp_path, capsys):
    import torch

    from backend.models.checkpoint import save_torch
    from backend.training.checkpoint import rng_state

    run = tmp_path / "run"
    save_torch({"G": {"w": torch.zeros(1)}, "pos": {"stage": 1}, "rng": rng_state()}, run / "state.pt")
    assert main(["export", str(run / "state.pt"), str(tmp_path / "m.onnx")]) == 2
    err = one_line_error(capsys)
    assert "training state" in err and "best_generator.pt" in err
    assert not (tmp_path / "m.onnx").exists()
