"""Codemap priors recover codes their neighbours determine, keep the rest, draw reproducibly, save and load."""

import io
import time

import pytest
import torch

from sepmodels.inpaint.codes import (
    CodePrior,
    NaiveBayesCodes,
    TransformerCodes,
    UniformCodes,
    box_mask,
    inpainting_accuracy,
    neighbour_offsets,
    prior_from_state,
    random_box_masks,
)

K = 16
SHAPE = (8, 8)
STEP = 3  # coprime with K: a time neighbour determines a cell's code


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def time_rule_maps(n: int, seed: int, shape: tuple[int, int] = SHAPE) -> torch.Tensor:
    """``code[f, t] = (code[f, t - 1] + STEP) % K`` from a random first column: a cell's time neighbours
    determine its code, its frequency neighbours (other rows, independent) say nothing about it."""
    first = torch.randint(K, (n, shape[0], 1), generator=seeded(seed))
    return (first + STEP * torch.arange(shape[1])) % K


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second thread costs more in hand-offs than it gains, and many times more on busy cores
    (the transformer's fit here took 4 s on one thread and 46 s on two next to another job)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    test = time_rule_maps(48, seed=1)
    return time_rule_maps(300, seed=0), test, random_box_masks(len(test), SHAPE, seeded(2))


@pytest.fixture(scope="module")
def priors(data) -> dict[str, CodePrior]:
    train, _, _ = data
    # 6 x 6 training crops of the 8 x 8 maps: the crop and sampling-window paths, on fewer tokens
    transformer = TransformerCodes(K, SHAPE, dim=16, layers=2, heads=2, window=(6, 6))
    return {
        "nb-time": NaiveBayesCodes(K, neighbours="time").fit(train),
        "nb-both": NaiveBayesCodes(K, neighbours="both").fit(train),
        "nb-both-r2": NaiveBayesCodes(K, neighbours="both", radius=2).fit(train),
        "nb-freq": NaiveBayesCodes(K, neighbours="freq").fit(train),
        "transformer": transformer.fit(train, steps=150, batch_size=16, lr=1e-2, generator=seeded(0)),
        "uniform": UniformCodes(K).fit(train),
    }


ALL = ["nb-time", "nb-both", "nb-both-r2", "nb-freq", "transformer", "uniform"]


def _split_at_the_left_edge(data) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    _, test, masks = data
    edge = masks[:, :, 0].any(1)  # boxes that reach column 0
    return {"clear": (test[~edge], masks[~edge]), "edge": (test[edge], masks[edge])}


@pytest.mark.parametrize("which", ["nb-time", "nb-both", "nb-both-r2"])
def test_naive_bayes_recovers_boxes_it_can_enter_from_the_left(priors, data, which):
    prior, (_, test, masks) = priors[which], data
    accuracy = {part: inpainting_accuracy(prior, *sets) for part, sets in _split_at_the_left_edge(data).items()}
    overall = inpainting_accuracy(prior, test, masks)
    print(f"{prior.name}: {overall:.3f} ({accuracy['clear']:.3f} clear of the left edge)")
    # Filling left to right, a box that starts at column 0 has no left context for its first column: the guess
    # made there is carried along the row. Every other box comes back whole.
    assert accuracy["clear"] > 0.95
    assert overall > 0.75  # chance is 1 / 16


def test_the_transformer_recovers_boxes_from_either_side(priors, data):
    prior, (_, test, masks) = priors["transformer"], data
    accuracy = {part: inpainting_accuracy(prior, *sets) for part, sets in _split_at_the_left_edge(data).items()}
    overall = inpainting_accuracy(prior, test, masks)
    print(f"{prior.name}: {overall:.3f} ({accuracy['edge']:.3f} at the left edge)")
    assert overall > 0.9
    assert accuracy["edge"] > 0.8  # it reads the box's right-hand side too


def test_the_floors_stay_near_chance(priors, data):
    _, test, masks = data
    uniform = inpainting_accuracy(priors["uniform"], test, masks, temperature=1.0, generator=seeded(3))
    blind = inpainting_accuracy(priors["nb-freq"], test, masks)  # rows are independent: nothing to see
    print(f"uniform: {uniform:.3f}, naive Bayes (freq): {blind:.3f}")
    assert abs(uniform - 1 / K) < 0.05
    assert blind < 0.15


def test_autoregressive_fill_carries_a_run_that_one_pass_cannot(data):
    train, test, _ = data
    mask = box_mask(SHAPE, (0, 8), (2, 7))  # every row loses columns 2..6; columns 1 and 7 stay
    masks = mask.expand(len(test), *SHAPE)
    ordered = NaiveBayesCodes(K, neighbours="time").fit(train)
    one_pass = NaiveBayesCodes(K, neighbours="time", autoregressive=False).fit(train)
    carried, bordered = inpainting_accuracy(ordered, test, masks), inpainting_accuracy(one_pass, test, masks)
    print(f"autoregressive: {carried:.3f}, one pass: {bordered:.3f}")
    assert carried > 0.95
    assert bordered < 0.6  # only the two columns next to known cells can be right, 2 of 5
    edited = one_pass.sample(test[0], mask, temperature=0)
    assert torch.equal(edited[:, [2, 6]], test[0][:, [2, 6]])


def _reference_fill(prior: NaiveBayesCodes, codemap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Temperature-0 naive Bayes straight from the counts, cell by cell in time-major order, in float64."""
    a = prior.alpha
    log_prior = torch.log(prior.class_counts.double() + a)
    pairs = prior.pair_counts.double()
    log_like = torch.log(pairs + a) - torch.log(pairs.sum(-1, keepdim=True) + a * K)  # [D, c, n]
    known = ~mask.clone()
    out = codemap.clone()
    F, T = codemap.shape
    for t in range(T):
        for f in range(F):
            if not mask[f, t]:
                continue
            logits = log_prior.clone()
            for d, (df, dt) in enumerate(prior.offsets.tolist()):
                g, s = f + df, t + dt
                if 0 <= g < F and 0 <= s < T and known[g, s]:
                    logits += log_like[d, :, out[g, s]]
            out[f, t] = logits.argmax()
            known[f, t] = prior.autoregressive
    return out


@pytest.mark.parametrize("autoregressive", [True, False])
@pytest.mark.parametrize(("neighbours", "radius"), [("time", 1), ("freq", 2), ("both", 1), ("both", 2)])
def test_naive_bayes_matches_a_cell_by_cell_reference(neighbours, radius, autoregressive):
    maps = torch.randint(K, (30, 6, 7), generator=seeded(4)) // torch.randint(
        1, 4, (30, 6, 7), generator=seeded(5)
    )
    prior = NaiveBayesCodes(K, neighbours, radius, alpha=0.5, autoregressive=autoregressive).fit(maps)
    mask = box_mask((6, 7), (1, 5), (2, 6)) | (torch.rand(6, 7, generator=seeded(6)) < 0.2)
    torch.testing.assert_close(prior.sample(maps[0], mask, 0.0), _reference_fill(prior, maps[0], mask))


def test_neighbour_offsets_follow_the_axes():
    assert neighbour_offsets("time", 2).tolist() == [[0, -2], [0, -1], [0, 1], [0, 2]]
    assert neighbour_offsets("freq", 1).tolist() == [[-1, 0], [1, 0]]
    assert len(neighbour_offsets("both", 2)) == 24 and [0, 0] not in neighbour_offsets("both", 2).tolist()


def test_counts_are_the_training_pairs():
    maps = torch.tensor([[[0, 1, 2], [2, 2, 0]]])
    prior = NaiveBayesCodes(3, neighbours="time").fit(maps)
    assert prior.class_counts.tolist() == [2, 1, 3]
    right = prior.offsets.tolist().index([0, 1])  # pairs (centre, right neighbour): (0,1) (1,2) (2,2) (2,0)
    assert prior.pair_counts[right].tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 1]]


@pytest.mark.parametrize("which", ALL)
def test_only_masked_cells_change_and_they_hold_valid_codes(priors, data, which):
    _, test, masks = data
    prior = priors[which]
    assert isinstance(prior, CodePrior)
    codemap, mask = test[0].to(torch.int32), masks[0] | box_mask(SHAPE, (7, 8), (0, 2))
    before = (codemap.clone(), mask.clone())
    edited = prior.sample(codemap, mask, temperature=1.0, generator=seeded(7))
    assert edited.shape == SHAPE and edited.dtype == torch.int32
    assert int(edited.min()) >= 0 and int(edited.max()) < K
    assert torch.equal(edited[~mask], codemap[~mask])
    assert torch.equal(codemap, before[0]) and torch.equal(mask, before[1])  # inputs untouched
    nothing = prior.sample(codemap, torch.zeros(SHAPE, dtype=torch.bool))
    assert torch.equal(nothing, codemap)


@pytest.mark.parametrize("which", ALL)
def test_seeded_draws_repeat_and_temperature_zero_is_deterministic(priors, data, which):
    _, test, _ = data
    prior, everything = priors[which], torch.ones(SHAPE, dtype=torch.bool)  # nothing known: the most freedom
    draw = lambda seed, temperature=1.0: prior.sample(test[0], everything, temperature, seeded(seed))  # noqa: E731
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert torch.equal(draw(0, 0.0), draw(1, 0.0))
    assert torch.equal(prior.sample(test[0], everything, 0.0), draw(2, 0.0))


@pytest.mark.parametrize("which", ALL)
def test_state_round_trips_through_a_weights_only_checkpoint(priors, data, which):
    _, test, masks = data
    prior = priors[which]
    buffer = io.BytesIO()
    torch.save({"prior": prior.state()}, buffer)
    buffer.seek(0)
    loaded = prior_from_state(torch.load(buffer, weights_only=True)["prior"])
    assert type(loaded) is type(prior) and loaded.name == prior.name and loaded.codebook_size == K
    for temperature in (0.0, 1.0):
        expected = prior.sample(test[3], masks[3], temperature, seeded(8))
        assert torch.equal(loaded.sample(test[3], masks[3], temperature, seeded(8)), expected)


def test_unknown_states_raise():
    with pytest.raises(ValueError, match="unknown code prior class 'Nope'"):
        prior_from_state({"class": "Nope"})
    with pytest.raises(ValueError, match="not a NaiveBayesCodes"):
        NaiveBayesCodes.from_state(UniformCodes(4).state())


def test_transformer_training_is_seeded():
    maps = time_rule_maps(20, seed=9, shape=(4, 4))
    fit = lambda: TransformerCodes(K, (4, 4), dim=8, layers=1, heads=2).fit(  # noqa: E731
        maps, steps=3, batch_size=4, generator=seeded(10)
    )
    first, second = fit().state()["state_dict"], fit().state()["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def _one_line_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("which", ALL)
def test_bad_arguments_raise_one_line_value_errors(priors, data, which):
    _, test, masks = data
    prior, codemap, mask = priors[which], test[0], masks[0]
    _one_line_value_error(lambda: prior.sample(test[:2], mask), r"codemap must be a \[F, T\]")
    _one_line_value_error(lambda: prior.sample(codemap.float(), mask), "integer codes")
    _one_line_value_error(lambda: prior.sample(codemap + K, mask), r"\[0, 16\)")
    _one_line_value_error(lambda: prior.sample(codemap, mask[:, :4]), "mask must be a bool tensor")
    _one_line_value_error(lambda: prior.sample(codemap, mask.long()), "mask must be a bool tensor")
    _one_line_value_error(lambda: prior.sample(codemap, mask, temperature=-1.0), "temperature")
    _one_line_value_error(lambda: prior.fit(codemap), r"codemaps must be a \[N, F, T\]")
    _one_line_value_error(lambda: prior.fit(test - 1), r"\[0, 16\)")
    _one_line_value_error(lambda: inpainting_accuracy(prior, test, masks & False), "no cells")


def test_bad_settings_raise_one_line_value_errors():
    _one_line_value_error(lambda: NaiveBayesCodes(K, neighbours="diagonal"), "neighbours must be one of")
    _one_line_value_error(lambda: NaiveBayesCodes(K, radius=0), "radius")
    _one_line_value_error(lambda: NaiveBayesCodes(K, alpha=0.0), "alpha")
    _one_line_value_error(lambda: UniformCodes(1), "codebook_size")
    _one_line_value_error(lambda: TransformerCodes(K, SHAPE, dim=10, heads=4), "multiple of heads")
    transformer = TransformerCodes(K, SHAPE, dim=8, layers=1, heads=2)
    _one_line_value_error(lambda: transformer.sample(torch.zeros(4, 4, dtype=torch.long),
                                                     torch.ones(4, 4, dtype=torch.bool)), "8 x 8")  # fmt: skip
    _one_line_value_error(lambda: transformer.fit(torch.zeros(2, 4, 4, dtype=torch.long)), r"\[N, 8, 8\]")


def test_box_masks():
    mask = box_mask((4, 6), (-2, 2), (4, 10))  # clipped to rows 0..1, columns 4..5
    assert mask.dtype == torch.bool and mask.nonzero().tolist() == [[0, 4], [0, 5], [1, 4], [1, 5]]
    _one_line_value_error(lambda: box_mask((4, 6), (2, 2), (0, 3)), "empty")
    _one_line_value_error(lambda: box_mask((4, 6), (0, 2), (6, 8)), "empty")
    boxes = random_box_masks(200, (20, 10), seeded(11), min_frac=0.1, max_frac=0.5)
    assert torch.equal(boxes, random_box_masks(200, (20, 10), seeded(11), min_frac=0.1, max_frac=0.5))
    rows, cols = boxes.any(2).sum(1), boxes.any(1).sum(1)
    assert rows.min() == 2 and rows.max() == 10 and cols.min() == 1 and cols.max() == 5
    assert torch.equal(boxes.sum((1, 2)), rows * cols)  # each one a single box
    _one_line_value_error(lambda: random_box_masks(2, (4, 4), min_frac=0.6, max_frac=0.5), "min_frac")


def test_naive_bayes_fills_a_box_of_a_full_size_codemap_interactively():
    maps = torch.randint(256, (20, 64, 32), generator=seeded(12))
    prior = NaiveBayesCodes(256).fit(maps)
    mask = box_mask((64, 32), (24, 40), (8, 24))  # 16 x 16
    prior.sample(maps[0], mask, generator=seeded(0))  # warm-up
    seconds = []
    for seed in range(3):
        start = time.perf_counter()
        prior.sample(maps[0], mask, generator=seeded(seed))
        seconds.append(time.perf_counter() - start)
    print(f"16 x 16 box of a 64 x 32 map, K = 256: {1000 * min(seconds):.1f} ms")
    assert min(seconds) < 0.1
