"""Classes defined by example (issue 26.4): how the bank holds them and how they score."""

from __future__ import annotations

import numpy as np
import pytest

from hazardwatch.errors import ConfigError
from hazardwatch.scoring.bank import MAX_EXAMPLES, Example, PromptBank, example_probability
from hazardwatch.scoring.worker import TextIndex
from tests.fakes import CRASH, DIM, QUIET, FakeEncoder


def bank_with(
    examples: list[Example], model: str = FakeEncoder.name, extra: str = ""
) -> PromptBank:
    lines = "".join(
        f"      - {{source: '{e.source}', embedding: '{e.embedding}'}}\n" for e in examples
    )
    return PromptBank.from_text(
        "classes:\n"
        "  traffic_accident: {kind: hazard, prompts: [a car crash]}\n"
        "  empty_road: {kind: normal, prompts: [an empty road]}\n"
        f"  red_sight:\n    kind: hazard\n    model: {model}\n    examples:\n{lines}"
    )


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_a_class_by_example_round_trips_through_the_bank_text() -> None:
    bank = bank_with([Example.of("event:a", CRASH), Example.of("upload:b", QUIET)])
    again = PromptBank.from_text(bank.to_text())
    c = again.get("red_sight")
    assert c.by_example and c.model == FakeEncoder.name and not c.prompts
    assert [e.source for e in c.examples] == ["event:a", "upload:b"]
    assert np.allclose(c.examples[0].vector(), CRASH, atol=1e-3)
    assert PromptBank.from_text(again.to_text()).version == again.version  # stable
    # The softmax is over the classes in words only.
    assert again.worded == [0, 1] and again.prompts == ["a car crash", "an empty road"]
    assert again.worded_hazards == ["traffic_accident"]


def test_what_defines_a_class_by_example_is_its_model_and_its_set_of_examples() -> None:
    a, b = Example.of("event:a", CRASH), Example.of("event:b", QUIET)
    one = bank_with([a, b]).get("red_sight").definition
    assert one == bank_with([b, a]).get("red_sight").definition  # order does not matter
    assert one != bank_with([a]).get("red_sight").definition
    assert one != bank_with([a, b], model="other").get("red_sight").definition
    assert PromptBank.from_text(bank_with([a]).to_text()).get("traffic_accident").definition == ""


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("    prompts: [a red thing]\n    model: m\n"
         "    examples: [{source: s, embedding: AAA8AAA8}]\n", "not both"),
        ("    examples: [{source: s, embedding: AAA8AAA8}]\n", "needs the model"),
        ("    model: m\n    examples: [{source: s, embedding: '!!'}]\n", "not base64"),
        ("    model: m\n    examples: [{source: s, embedding: AAAAAA==}]\n", "finite float16"),
        ("    model: m\n    examples: [{source: s}]\n", "mapping of source and embedding"),
        ("    model: m\n    examples: [{source: '', embedding: AAA8AAA8}]\n", "1-200"),
        ("    model: m\n    examples:\n      - {source: a, embedding: AAA8AAA8}\n"
         "      - {source: b, embedding: AAA8AAA8AAA8AAA8}\n", "different sizes"),
        ("    model: m\n    examples: []\n", "non-empty list of prompt strings"),
    ],
)  # fmt: skip
def test_a_bad_class_by_example_is_refused_with_the_reason(body: str, why: str) -> None:
    text = "classes:\n  fire: {kind: hazard, prompts: [a fire]}\n  sight:\n    kind: hazard\n"
    with pytest.raises(ConfigError, match=why):
        PromptBank.from_text(text + body)


def test_a_class_holds_at_most_so_many_examples() -> None:
    many = [Example.of(f"keyframe:{i}", CRASH) for i in range(MAX_EXAMPLES + 1)]
    with pytest.raises(ConfigError, match=f"at most {MAX_EXAMPLES}"):
        bank_with(many)


def test_its_score_is_half_one_plus_the_best_cosine_outside_the_softmax() -> None:
    assert example_probability(np.array([[0.2], [0.6]]))[0] == pytest.approx(0.8)
    encoder = FakeEncoder()
    sight = unit(CRASH + 0.3 * QUIET)
    index = TextIndex.build(bank_with([Example.of("event:a", sight)]), encoder)
    images = np.stack([sight, QUIET, CRASH]).astype(np.float32)
    probs, sims = index.score(images, encoder.logit_scale)
    expected = (1 + images @ sight) / 2
    assert probs[:, 2] == pytest.approx(expected, abs=2e-3)
    # The classes in words still share a softmax of their own, summing to one.
    assert probs[:, :2].sum(axis=1) == pytest.approx(1.0)
    assert sims.shape == (3, 2)
    assert index.probabilities(probs[0])["red_sight"] == pytest.approx(1.0, abs=2e-3)


def test_examples_of_another_model_are_not_scored_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoder = FakeEncoder()
    index = TextIndex.build(bank_with([Example.of("event:a", CRASH)], model="ViT-L/14"), encoder)
    probs, _ = index.score(QUIET[None, :].astype(np.float32), encoder.logit_scale)
    assert "red_sight" not in index.probabilities(probs[0])
    assert set(index.probabilities(probs[0])) == {"traffic_accident", "empty_road"}
    assert "ViT-L/14" in caplog.text and "not scored here" in caplog.text
    # Of another size: the same.
    other = bank_with([Example.of("event:a", np.ones(DIM * 2, np.float32))])
    probs, _ = TextIndex.build(other, encoder).score(QUIET[None, :], encoder.logit_scale)
    assert not np.isfinite(probs[0, 2])


def test_a_bank_of_examples_only_scores_without_prompts() -> None:
    encoder = FakeEncoder()
    bank = PromptBank.from_text(
        f"classes:\n  sight:\n    kind: hazard\n    model: {encoder.name}\n"
        f"    examples: [{{source: s, embedding: '{Example.of('s', CRASH).embedding}'}}]\n"
    )
    index = TextIndex.build(bank, encoder)
    probs, sims = index.score(np.stack([CRASH, QUIET]), encoder.logit_scale)
    assert probs[0, 0] == pytest.approx(1.0, abs=2e-3) and sims.shape == (2, 0)
