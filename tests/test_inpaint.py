"""The inpainter (a VQ-VAE with its codemap priors), `sepmodels fit-codes`, and the inpainting app's view,
driven by params."""

import numpy as np
import pytest
import torch

from explorer.inpaint_view import EDITS, PHASES, InpaintExplorer, read_training_log
from sepmodels.checkpoint import CheckpointError
from sepmodels.cli import main
from sepmodels.inpaint.codes import box_mask
from sepmodels.inpaint.inpainter import CodemapPriors, Inpainter, reconstruction_quality
from sepmodels.inpaint.vqvae import NoteCodec
from tests.conftest import synthetic_note


@pytest.fixture(scope="module")
def inpainter(tiny_inpainter_paths):
    codec, codes, _log = tiny_inpainter_paths
    return Inpainter.load(codec, codes)


def test_analyse_edit_decode_and_listen(inpainter):
    audio = synthetic_note(262.0, 1.0)
    a = inpainter.analyse(audio)
    h, w = a.codes.shape
    assert a.log_mag.shape == a.recon.shape and a.log_mag.shape[0] == inpainter.model.config.stft.bins
    mask = box_mask((h, w), (2, 6), (1, 3))
    for prior in inpainter.prior_names:
        edited = inpainter.inpaint(a.codes, mask, prior, temperature=1.0, seed=3)
        assert torch.equal(edited[~mask], a.codes[~mask])
        torch.testing.assert_close(edited, inpainter.inpaint(a.codes, mask, prior, temperature=1.0, seed=3))
    erased = inpainter.erase(a.codes, mask)
    assert torch.all(erased[mask] == inpainter.silence) and torch.equal(erased[~mask], a.codes[~mask])
    other = inpainter.analyse(synthetic_note(440.0, 0.5)).codes  # shorter: padded with its last column
    replaced = inpainter.replace(a.codes, other, mask)
    assert torch.equal(replaced[mask], other[:, [min(c, other.shape[1] - 1) for c in range(w)]][mask])
    log_mag = inpainter.decode(erased, a.log_mag.shape[-1])
    assert log_mag.shape == a.log_mag.shape
    out = inpainter.listen(log_mag, audio.shape[-1])
    assert out.shape == audio.shape and torch.isfinite(out).all()
    assert set(inpainter.timings) == {"resample", "decode", "audio"}
    with pytest.raises(ValueError, match="unknown codemap prior"):
        inpainter.inpaint(a.codes, mask, "oracle")


def test_the_codemap_priors_file_round_trips_and_refuses_other_files(tiny_inpainter_paths, tmp_path):
    codec_path, codes_path, _ = tiny_inpainter_paths
    codes = CodemapPriors.load(codes_path)
    assert set(codes.accuracy) == set(codes.priors) and all(0 <= v <= 1 for v in codes.accuracy.values())
    assert 1 <= codes.perplexity <= len(codes.usage)
    assert codes.meta["energy"]["method"].startswith("estimate")
    with pytest.raises(CheckpointError, match="not codemap priors"):
        CodemapPriors.load(codec_path)
    with pytest.raises(CheckpointError, match="not a VQ-VAE"):
        Inpainter.load(codes_path, codes_path)


def test_reconstruction_quality_reports_every_figure_beside_its_reference_points(tiny_inpainter_paths):
    codec = NoteCodec.load(tiny_inpainter_paths[0])
    clips = torch.stack([synthetic_note(f, 0.5) for f in (200.0, 300.0)])
    q = reconstruction_quality(codec, clips, iterations=8)
    assert set(q) == {"lsd_db", "lsd_db_average", "spectral_convergence", "spectral_convergence_average",
                      "si_sdr_gl", "si_sdr_gl_original", "si_sdr_phase"}  # fmt: skip
    assert all(np.isfinite(v) for v in q.values()) and q["lsd_db"] > 0


def test_fit_codes_command(tiny_inpainter_paths, notes_root, tmp_path, capsys):
    out = tmp_path / "codes.pt"
    args = ["fit-codes", "--codec", tiny_inpainter_paths[0], "--notes", str(notes_root), "--out", str(out),
            "--transformer-steps", "5", "--energy", "estimate", "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "masked transformer" in printed and "uniform" in printed and out.is_file()
    assert main([*args[:4], str(tmp_path), "--out", str(out)]) != 0  # a folder without notes
    assert "holds no train/examples.json" in capsys.readouterr().err


def test_train_vqvae_command_refuses_the_wrong_data(tmp_path, capsys):
    assert main(["train", "--model", "vqvae", "--out", str(tmp_path / "v"), "--data", "toy"]) != 0
    assert "trains on --data notes" in capsys.readouterr().err
    assert main(["train", "--model", "vqvae", "--out", str(tmp_path / "v")]) != 0  # notes, without --root
    assert "--data notes needs --root" in capsys.readouterr().err


# -- the app's view ----------------------------------------------------------------------------------------
@pytest.fixture
def view(inpainter, tiny_inpainter_paths):
    notes = {"low": synthetic_note(196.0, 1.0), "high": synthetic_note(523.0, 1.0)}
    return InpaintExplorer(inpainter, notes, read_training_log(tiny_inpainter_paths[2]))


def test_the_view_opens_a_note_with_its_codemap_and_players(view):
    h, w = view.analysis.codes.shape
    assert len(view._cells.data["code"]) == h * w
    assert view._players["original"].object is not None and view._players["edited"].object is not None
    assert "codes in the box changed" in view.status and "ms" in view.status
    assert view.param.rows.bounds == (0, h) and view.param.columns.bounds == (0, w)


def test_a_box_selection_on_the_codemap_sets_the_box_and_edits_it(view):
    data = view._cells.data
    picked = [i for i in range(len(data["row"])) if 1 <= data["row"][i] < 4 and 0 <= data["col"][i] < 2]
    view._on_select("indices", [], picked)
    assert tuple(view.rows) == (1, 4) and tuple(view.columns) == (0, 2)
    changed = view.edited != view.analysis.codes
    assert not changed[~view.mask()].any()
    assert view._edit_box.data["left"] == [0.0]


def test_every_edit_and_option_runs(view):
    for edit in EDITS:
        view.edit = edit
        assert edit.split()[0] in view.status or "codes in the box changed" in view.status
    view.edit = EDITS[2]
    assert torch.all(view.edited[view.mask()] == view.ip.silence)
    view.param.update(edit=EDITS[0], temperature=0.0, channel=1, phase=PHASES[1])
    assert "latent channel 1 only" in view.status
    view.note = "high"
    assert view.edited_audio.shape == view.notes["high"].shape


def test_an_upload_that_is_not_audio_says_so(view):
    class Event:
        new = b"not audio"

    view._upload.filename = "junk.wav"
    view._on_upload(Event())
    assert "Not loaded" in view._upload_msg.object


def test_apply_draws_a_new_resample_each_press(view):
    from explorer.inpaint_view import EDITS

    view.param.update(edit=EDITS[0], temperature=1.0)
    seed, before = view.seed, view.edited.clone()
    view.press_apply()
    assert view.seed == seed + 1 and f"draw seed {seed + 1}" in view.status
    again = view.edited.clone()
    view.seed = seed + 1  # the same seed reproduces the same draw
    view.apply()
    assert torch.equal(view.edited, again)
    assert not torch.equal(before, again)  # the press drew anew
