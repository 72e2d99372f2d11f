"""The thesis's studies of the priors: shapes, meaning, results files, and the `study` command."""

import math
from dataclasses import replace

import pytest
import torch

from sepmodels.checkpoint import safe_load
from sepmodels.cli import main
from sepmodels.data import toy
from sepmodels.data.testsets import TOY, MusdbTestData, ToyTestData, test_data_from
from sepmodels.priors import GaussianPriors
from sepmodels.studies import (
    RESULT_TYPES,
    STUDIES,
    ConditionedFlows,
    CrossResult,
    DenoiseResult,
    FinetunedFlows,
    NoiseResult,
    ProbeResult,
    SampleResult,
    StudyError,
    cross_study,
    denoise_study,
    describe_priors,
    load_study,
    noise_study,
    own_likelihood,
    probe_study,
    run_study,
    sample_study,
    save_study,
    study_clips,
)


def test_study_clips_share_their_noise_across_levels():
    a, b = study_clips(2, 64, 0.1), study_clips(2, 64, 0.3)
    clean = toy.toy_test_set(2, 64)
    torch.testing.assert_close((a - clean) * 3, b - clean)


def test_toy_test_data_gives_the_toy_test_set_and_the_studies_noise_bit_for_bit():
    data = ToyTestData()
    assert data.sources == toy.SOURCES and data.sample_rate == toy.SAMPLE_RATE and data == TOY
    assert torch.equal(data.clean(3, 100, seed=5), toy.toy_test_set(3, 100, seed=5))
    eps = torch.randn((3, 4, 100), generator=torch.Generator().manual_seed(6))
    assert torch.equal(study_clips(3, 100, 0.3, 5, data), toy.toy_test_set(3, 100, seed=5) + 0.3 * eps)
    data.clean(3, 100, seed=5).zero_()  # a caller's copy: the cached clips stay as they were
    assert torch.equal(data.clean(3, 100, seed=5), toy.toy_test_set(3, 100, seed=5))


def test_test_data_rebuilds_from_its_description():
    assert test_data_from(None) == TOY and test_data_from({"split": "test", "seed": 3}) == TOY
    assert test_data_from(TOY.describe() | {"n": 2, "length": 64}) == TOY
    assert TOY.describe() == {"name": "toy", "split": "test"}  # what results files have always said
    musdb = MusdbTestData("/data/musdb")
    assert musdb.describe() == {"name": "musdb", "split": "test", "root": "/data/musdb", "mono": "left"}
    assert test_data_from(musdb.describe()) == musdb and musdb.sources == ("drums", "bass", "other", "vocals")
    assert musdb.train_options() == {"data": "musdb", "root": "/data/musdb", "mono": "left"}
    downmix = MusdbTestData("/data/musdb", mono="mean")  # the stems benchmark's clips are downmixes
    assert test_data_from(downmix.describe()) == downmix != musdb
    # a results file from before the downmix option read the left channel
    assert test_data_from({"name": "musdb", "root": "/data/musdb"}) == musdb
    with pytest.raises(ValueError, match="mono must be 'left' or 'mean'"):
        MusdbTestData("/data/musdb", mono="right")
    assert TOY.train_options() == {"data": "toy"}
    with pytest.raises(ValueError, match="unknown test data 'nsynth'"):
        test_data_from({"name": "nsynth"})


def test_cross_study_values_are_the_mean_log_likelihood_of_each_clip(tiny_priors):
    r = cross_study(tiny_priors, sigmas=(0.05, 0.5), n=2, length=256)
    assert r.values.shape == (2, 4, 4, 2) and r.sigmas == (0.05, 0.5)
    clip = study_clips(2, 256, 0.5)[1, 2]  # the second saw clip at sigma 0.5
    expect = tiny_priors.cross_log_prob(clip[None], 0.5)[0].mean(dim=1)  # under every prior
    torch.testing.assert_close(r.values[1, 2, :, 1], expect)


def test_own_likelihood_matches_the_gaussian_closed_form():
    # Gaussian priors N(0, v) scored on toy clips: the mean log-density has a closed form in the clips' power.
    var = torch.tensor([0.5, 1.0, 0.3, 0.4])
    g = GaussianPriors(torch.zeros(4), var)
    got = own_likelihood(g, 0.1, (0.1,), n=3, length=128)
    x = study_clips(3, 128, 0.1)
    v = (var + 0.01)[None, :, None]
    expect = (-0.5 * (x.pow(2) / v + torch.log(2 * math.pi * v))).mean(dim=(0, 2))
    torch.testing.assert_close(got[0], expect)


def test_probes_find_constant_zero_likelier_than_one_under_a_zero_mean_gaussian():
    g = GaussianPriors(torch.zeros(4), torch.ones(4), names=toy.SOURCES)
    r = probe_study(g, conditionings=(0.0,), noise_sigmas=(0.1, 3.0), n=2, length=64)
    assert r.constants.shape == (1, 2, 4) and r.noise.shape == (1, 2, 4)
    c = r.constants[0]
    torch.testing.assert_close(c[0], torch.full((4,), -0.5 * math.log(2 * math.pi)))
    torch.testing.assert_close(c[1], torch.full((4,), -0.5 * math.log(2 * math.pi) - 0.5))
    assert (r.noise[0, 0] > r.noise[0, 1]).all()  # wider noise is less likely under N(0, 1)


def test_probe_and_sample_studies_on_flow_priors(tiny_priors):
    p = probe_study(tiny_priors, n=1, length=128)
    assert p.constants.shape == (5, 2, 4) and p.noise.shape == (5, 7, 4)
    assert torch.isfinite(p.constants).all() and torch.isfinite(p.noise).all()
    s = sample_study(tiny_priors, n=2, seconds=0.01)
    assert s.samples.shape == (2, 4, tiny_priors.model.valid_length(147))


def test_denoise_study_scores_each_prior_beside_the_exact_one(tiny_priors):
    r = denoise_study(tiny_priors, n=2, length=600, sigmas=(0.1, 1.0))
    T = tiny_priors.valid_length(600)
    for key in ("noisy", "denoised", "exact"):
        assert getattr(r, key).shape == (2, 4, 2) and torch.isfinite(getattr(r, key)).all()
    assert r.audio.shape == r.exact_audio.shape == (2, 4, T) and r.audio.dtype == torch.float16
    # the noisy input is the studies' own: clean + sigma * noise, the same unit noise at every level
    assert torch.allclose(r.clean + 0.1 * r.noise, study_clips(2, T, 0.1)[0], atol=1e-6)
    # the exact posterior mean beats the noisy input by far at sigma 1 (a whole clip pins pitch and phase)
    assert (r.exact[1] > r.noisy[1] + 10).all()
    for key in ("interfered", "exact_interfered"):  # own clip + another source's clip, scored against its own
        v = getattr(r, key)
        assert v.shape == (2, 4, 4, 2)
        assert torch.isnan(v[:, range(4), range(4)]).all() and torch.isfinite(v[:, [0, 1], [1, 0]]).all()


def test_denoise_study_of_the_exact_prior_has_no_second_reference():
    from sepmodels.nn.exact import ExactToyPriors

    r = denoise_study(ExactToyPriors(), n=1, length=1000, sigmas=(1.0,))
    assert not r.has_exact and r.exact_audio is None and (r.denoised > r.noisy + 10).all()


def test_denoise_study_refuses_a_reference_it_cannot_give():
    gauss = GaussianPriors(torch.zeros(2), torch.ones(2))
    with pytest.raises(StudyError, match="toy sources"):
        denoise_study(gauss, n=1, length=600, sigmas=(1.0,))
    with pytest.raises(StudyError, match="cannot take"):
        denoise_study(ExactFree(), n=1, length=100, sigmas=(1.0,))


class ExactFree:
    """Stands in for priors over the toy sources that take any length (to reach the exact prior's check)."""

    names, sample_rate, kind, device = toy.SOURCES, toy.SAMPLE_RATE, "stub", "cpu"

    def valid_length(self, length):
        return length

    def denoise(self, x, sigma):
        return x


def test_noise_study_fine_tunes_a_chain_and_conditions_the_given_priors(tiny_priors, tmp_path):
    r = noise_study(tiny_priors, levels=(0.05, 0.5), test_noise=(0.01, 0.3), n=2, length=128,
                    finetune_steps=2, base_steps=2, batch_size=2, work_dir=tmp_path)  # fmt: skip
    assert r.conditional.own.shape == (2, 2, 4) and r.conditional.cross.shape == (2, 4, 4)
    f = r.finetuned
    assert f.labels == ("plain, sigma 0.001", "fine-tuned at 0.05", "fine-tuned at 0.5")
    assert f.own.shape == (3, 2, 4) and f.cross.shape == (3, 4, 4)
    assert torch.isfinite(f.own).all()
    assert list(tmp_path.iterdir()) == []  # the fine-tuned models are not left behind


def test_studies_that_need_a_likelihood_refuse_score_priors():
    from sepmodels.nn.score import ScoreConfig, ScoreNet
    from sepmodels.priors import NoiseLadder, PriorSet

    score = PriorSet(ScoreNet(4, ScoreConfig.preset("tiny")), toy.SOURCES, toy.SAMPLE_RATE, NoiseLadder())
    for study in (cross_study, probe_study, noise_study):
        with pytest.raises(StudyError, match="score priors"):
            study(score)


def test_results_files_round_trip_and_describe_themselves(tiny_priors, tmp_path):
    results, data = run_study("cross", tiny_priors, n=1, seconds=0.01)
    path = tmp_path / "cross.pt"
    save_study(path, "cross", results, describe_priors(tiny_priors, "tiny.pt"), data)
    study = load_study(path)
    assert study.study == "cross" and study.priors["path"] == "tiny.pt" and study.data["n"] == 1
    assert study.created and study.priors["kind"] == "flow" and study.test_data == TOY
    assert isinstance(study.results, CrossResult)
    torch.testing.assert_close(study.results.values, results.values)


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_bad_results_files_give_one_line(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"format": "something else"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert "\n" not in str(err.value)


def test_study_command_writes_every_results_file(tiny_priors_path, tmp_path, capsys):
    out = tmp_path / "studies"
    code = main(["study", "all", "--priors", tiny_priors_path, "--out", str(out), "--n", "1", "--seconds", "0.04",
                 "--base-steps", "1", "--finetune-steps", "1", "--quiet"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.pt" for s in STUDIES)
    assert load_study(out / "noise.pt").results.finetuned.own.shape[0] == 6


def test_study_command_rejects_a_file_as_out_folder(tiny_priors_path, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["study", "cross", "--priors", tiny_priors_path, "--out", str(f)]) != 0
    assert "is a file" in capsys.readouterr().err


def _same(a, b) -> None:
    """Equal results: same class, and every field equal (tensors in value and dtype)."""
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)), name
        elif hasattr(x, "__dataclass_fields__"):
            _same(x, y)
        else:
            assert x == y, name


def _results() -> dict[str, list]:
    g = torch.Generator().manual_seed(0)
    t = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    names = ("a", "b")
    cond = ConditionedFlows(own=t(2, 3, 2), cross=t(2, 2, 2))
    tuned = FinetunedFlows(("plain", "at 0.1", "at 1"), t(3, 3, 2), t(3, 2, 2), 5, 2)
    denoise = DenoiseResult((0.1, 1.0), names, names, 100, t(2, 2, 3), t(2, 2, 3), t(2, 50), t(2, 50),
                            t(2, 2, 50).half(), interfered=t(2, 2, 2, 3))  # fmt: skip
    noise = NoiseResult((0.1, 1.0), (0.01, 0.1, 1.0), names, names, cond)
    with_exact = replace(denoise, exact=t(2, 2, 3), exact_audio=t(2, 2, 50).half(), exact_interfered=t(2, 2, 2, 3))
    return {
        "cross": [CrossResult((0.1, 1.0), names, names, t(2, 2, 2, 4))],
        "noise": [noise, replace(noise, finetuned=tuned)],
        "probes": [ProbeResult((0.1,), (0.0, 1.0), (0.1, 3.0), names, t(1, 2, 2), t(1, 2, 2))],
        "samples": [SampleResult(t(2, 2, 30), 0.01, names, 100)],
        "denoise": [denoise, with_exact],
    }


@pytest.mark.parametrize("study", STUDIES)
def test_every_result_round_trips_through_its_file_as_the_same_dataclass(study, tmp_path):
    for i, results in enumerate(_results()[study]):
        path = tmp_path / f"{study}{i}.pt"
        save_study(path, study, results, {"kind": "flow", "path": "x.pt"}, {"name": "toy", "n": 4})
        loaded = load_study(path)
        assert loaded.study == study and loaded.data == {"name": "toy", "n": 4}
        _same(loaded.results, results)
    wrong = _results()["samples" if study != "samples" else "cross"][0]
    with pytest.raises(TypeError, match="results are a"):
        save_study(tmp_path / "wrong.pt", study, wrong, {}, {})


@pytest.mark.parametrize("study", STUDIES)
def test_every_shipped_results_file_loads_into_its_dataclass_and_writes_back_the_same(study, tmp_path):
    from sepmodels.checkpoint import default_priors_path

    path = default_priors_path().parent / "studies" / f"{study}.pt"
    record = load_study(path)
    assert isinstance(record.results, RESULT_TYPES[study]) and record.study == study
    assert record.test_data == TOY and record.priors["sources"] == list(toy.SOURCES)
    raw = safe_load(path, StudyError, "results file")["results"]
    again = tmp_path / f"{study}.pt"
    save_study(again, study, record.results, record.priors, record.data)
    rewritten = safe_load(again, StudyError, "results file")["results"]
    assert _plain(rewritten) == _plain(raw)  # the file format is unchanged: same keys, types and values


def _plain(x):
    """A results dict with tensors as (dtype, shape, values) for comparison."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return (x.dtype, tuple(x.shape), x.nan_to_num(7.0).tolist())
    return (type(x), x)


def test_a_results_file_with_unexpected_contents_gives_one_line(tmp_path):
    path = tmp_path / "cross.pt"
    torch.save({"format": "sepmodels-study", "version": 1, "study": "cross", "created": "now", "priors": {},
                "data": {}, "results": {"sigmas": [0.1]}}, path)  # fmt: skip
    with pytest.raises(StudyError, match="cross results file with unexpected contents") as err:
        load_study(path)
    assert "\n" not in str(err.value)
