"""The writer's character model and CTC beam search with it."""

from __future__ import annotations

import numpy as np
import pytest

from core.recognize.charlm import CharNgramLM, ctc_beam_search, last_word, words_of
from core.recognize.crnn import ctc_greedy

ALPHABET = "degs2"
LINES = ["edges of the graph", "two edges", "edges and nodes", "the edges", "dges"] * 3


def frames(spec: list[dict[str, float]], alphabet: str = ALPHABET) -> np.ndarray:
    """[T, 1 + len(alphabet)] probabilities from per-frame {char: p} (the rest goes to blank)."""
    out = np.full((len(spec), len(alphabet) + 1), 1e-4, dtype=np.float32)
    for t, chars in enumerate(spec):
        for c, p in chars.items():
            out[t, alphabet.index(c) + 1] = p
        out[t, 0] = max(1e-4, 1.0 - sum(chars.values()))
    return out / out.sum(1, keepdims=True)


# "edges" where the network thinks the g looks a bit more like a 2
AMBIGUOUS = frames([{"e": 0.95}, {}, {"d": 0.95}, {}, {"2": 0.5, "g": 0.45}, {}, {"e": 0.95}, {}, {"s": 0.95}])


def test_lm_prefers_the_writers_words():
    lm = CharNgramLM.train(LINES, order=5)
    assert lm.logprob("edg", "e") > lm.logprob("edg", "2") + 2
    assert lm.logprob("", "e") > lm.logprob("", "2")  # the start of a line is a context too
    total = sum(np.exp(lm.logprob("the ed", c)) for c in set("".join(LINES)))
    assert total == pytest.approx(1.0, abs=0.02)  # a distribution over the characters it knows (+ unknown mass)


def test_beam_search_without_lm_matches_best_path():
    assert ctc_beam_search(AMBIGUOUS, ALPHABET, None, beam=4) == ctc_greedy(AMBIGUOUS, ALPHABET)[0] == "ed2es"


def test_beam_search_with_lm_reads_the_word():
    lm = CharNgramLM.train(LINES, order=5)
    assert ctc_beam_search(AMBIGUOUS, ALPHABET, lm, lm_weight=0.3, char_bonus=1.0, beam=8) == "edges"


def test_word_list_of_the_writers_lines():
    assert words_of(["Edges of the graph: v2", "ab ĉapo"]) == {"edges", "the", "graph", "ĉapo"}
    assert last_word("two Edges") == "edges" and last_word("edges ") == "" and last_word("") == ""
    lm = CharNgramLM.train(LINES, order=3)
    assert "edges" in lm.words and "ed2es" not in lm.words


def test_word_bonus_reads_a_listed_word_where_the_glyphs_lean_the_other_way():
    lm = CharNgramLM.train(LINES, order=5)
    # Without the character model the glyphs decide; the word list alone turns "ed2es" into "edges",
    # at the end of the line and before a space.
    assert ctc_beam_search(AMBIGUOUS, ALPHABET, lm, lm_weight=0.0, beam=8) == "ed2es"
    assert ctc_beam_search(AMBIGUOUS, ALPHABET, lm, lm_weight=0.0, beam=8, word_bonus=1.0) == "edges"
    alphabet = ALPHABET + " "
    mid_line = frames([{"e": 0.95}, {}, {"d": 0.95}, {}, {"2": 0.5, "g": 0.45}, {}, {"e": 0.95}, {}, {"s": 0.95},
                       {" ": 0.95}, {"d": 0.95}], alphabet)
    assert ctc_beam_search(mid_line, alphabet, lm, lm_weight=0.0, beam=8) == "ed2es d"
    assert ctc_beam_search(mid_line, alphabet, lm, lm_weight=0.0, beam=8, word_bonus=1.0) == "edges d"
    unlisted = CharNgramLM(5, lm.counts, lm.vocab_size)  # an older model dir: no word list, no bonus
    assert ctc_beam_search(AMBIGUOUS, ALPHABET, unlisted, lm_weight=0.0, beam=8, word_bonus=1.0) == "ed2es"


def test_repeated_letters_need_a_blank_between():
    probs = frames([{"e": 0.95}, {"e": 0.95}, {}, {"e": 0.95}])
    assert ctc_beam_search(probs, ALPHABET, None, beam=4) == "ee"


def test_save_and_load(tmp_path):
    lm = CharNgramLM.train(LINES, order=4)
    lm.save(tmp_path)
    again = CharNgramLM.load(tmp_path)
    assert again is not None and again.order == 4 and again.words == lm.words
    assert again.with_prior(None, 1.0).words == lm.words
    assert again.logprob("edg", "e") == pytest.approx(lm.logprob("edg", "e"))
    assert CharNgramLM.load(tmp_path / "nowhere") is None


def test_text_prior_knows_english_and_is_cached(tmp_path):
    from core.recognize.charlm import text_prior

    prior = text_prior(order=4, cache_dir=tmp_path)
    assert prior.logprob("th", "e") > prior.logprob("th", "q") + 2
    assert prior.logprob("regist", "e") > prior.logprob("regist", "x")
    cached = list(tmp_path.glob("text-prior-*-o4.json"))
    assert len(cached) == 1
    again = text_prior(order=4, cache_dir=tmp_path)  # read back, not rebuilt
    assert again.logprob("th", "e") == pytest.approx(prior.logprob("th", "e"))
    cached[0].write_text("{not json")  # a damaged cache is rebuilt, not fatal
    assert text_prior(order=4, cache_dir=tmp_path).logprob("th", "e") == pytest.approx(prior.logprob("th", "e"))


def test_writer_model_mixed_with_a_prior(tmp_path):
    writer = CharNgramLM.train(LINES, order=4)
    prior = CharNgramLM.train(["the quick brown fox", "queues and stacks", "quite quiet"] * 3, order=4)
    mixed = writer.with_prior(prior, 0.5)
    p = 0.5 * np.exp(writer.logprob("", "q")) + 0.5 * np.exp(prior.logprob("", "q"))
    assert mixed.logprob("", "q") == pytest.approx(np.log(p))
    assert mixed.logprob("", "q") > writer.logprob("", "q") + 1  # the prior lends what the writer never wrote
    assert mixed.logprob("edg", "e") > mixed.logprob("edg", "q")  # the writer's words still win
    assert writer.with_prior(prior, 1.0).logprob("", "q") == pytest.approx(writer.logprob("", "q"))
    mixed.save(tmp_path)
    again = CharNgramLM.load(tmp_path)  # the model dir carries its prior
    assert again.writer_share == 0.5 and again.prior is not None
    assert again.logprob("", "q") == pytest.approx(mixed.logprob("", "q"))
