"""The table of networks: every fact about a network is stated once, and everything else derives from it."""

from __future__ import annotations

import json

import pytest

from core.errors import ModelError
from core.modeldir import read_manifest, write_model_dir
from core.recognize import load_recognizer, networks, registry
from core.recognize.networks import CTC, ENCODER_DECODER, NETWORKS
from core.settings import SHIPPED_RECOGNIZER
from core.train_recognizer import RECIPE, default_recipe, train_recognizer
from tests.tiny_models import LINES16, tiny_trocr_dir, write_labels

ENTRIES = list(NETWORKS.values())


def test_the_table_holds_the_five_ctc_networks_and_trocr():
    assert set(networks.names(CTC)) == {"english_g2", "ppocrv4", "ppocrv5", "ppocrv6", "ppocrv6_tiny"}
    assert networks.names(ENCODER_DECODER) == ("trocr",)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda n: n.name)
def test_every_network_states_its_source_reading_recipe_and_licence(entry):
    assert entry.family in networks.FAMILIES and entry.title and entry.architecture
    assert entry.requirement and entry.import_name and entry.weights and entry.licence
    assert entry.input_height > 0 and entry.read_batch > 0
    assert set(entry.recipe) <= set(RECIPE)  # overrides of known keys only
    if entry.offline:  # its files come in a package: the install command names it
        assert entry.requirement in entry.install_hint and "==" in entry.requirement
        assert entry.package_dir() is not None, f"{entry.package} is not installed ({entry.install_hint})"
        assert entry.package_file(entry.weights).is_file()


@pytest.mark.parametrize("entry", [n for n in ENTRIES if n.offline], ids=lambda n: n.name)
def test_every_alias_resolves_to_its_network(entry):
    for alias in (entry.name, *entry.aliases):
        assert registry.resolve(alias) == entry.name
        assert networks.network(alias) is entry
    assert registry.engine_of(entry.name) == entry.family
    assert entry.name in registry.available()


def test_aliases_are_unique_and_hub_networks_are_not_builtin():
    spellings = [a for n in ENTRIES if n.offline for a in (n.name, *n.aliases)]
    assert len(spellings) == len(set(spellings)) and set(registry.BUILTIN) == set(spellings)
    assert "trocr" not in registry.BUILTIN.values()
    with pytest.raises(ModelError, match="unknown recognition network"):
        networks.network("no-such-network")


def test_recipes_and_read_batches_come_from_the_table():
    assert default_recipe("english_g2") == {**RECIPE, "freeze_convs": 3}
    assert default_recipe("ppocrv5") == RECIPE  # PP-OCR networks train every layer
    assert default_recipe("ppocrv6_tiny")["freeze_convs"] == 0
    assert default_recipe(str(SHIPPED_RECOGNIZER)) == RECIPE  # a model dir trains as the network it came from
    trocr = NETWORKS["trocr"]
    assert default_recipe("microsoft/trocr-small-handwritten") == {**RECIPE, **trocr.recipe}
    assert trocr.recipe["lr"] < RECIPE["lr"]
    from core.recognize.trocr import TrOCRRecognizer

    assert TrOCRRecognizer.batch_size == trocr.read_batch


def test_old_engine_names_still_load(tmp_path):
    """The shipped model says "crnn" (never rewritten), the tiny TrOCR's manifest "trocr": both load."""
    assert set(registry.ENGINES) == {"ctc", "encoder-decoder", "crnn", "trocr"}
    assert read_manifest(SHIPPED_RECOGNIZER)["engine"] == "crnn"
    assert registry.engine_of(str(SHIPPED_RECOGNIZER)) == CTC
    shipped = load_recognizer("default")
    assert shipped.batch_size == NETWORKS["ppocrv5"].read_batch and shipped.img_height == 48
    tiny = tiny_trocr_dir(tmp_path / "tiny")
    assert read_manifest(tiny)["engine"] == "trocr" and registry.engine_of(str(tiny)) == ENCODER_DECODER
    assert load_recognizer(str(tiny)).recognize([]) == []
    bad = write_model_dir(tmp_path / "odd", {"kind": "recognizer", "engine": "lstm", "name": "odd"}, lambda _t: None)
    with pytest.raises(ModelError, match="unknown recognizer engine 'lstm'"):
        registry.engine_of(str(bad))


def test_a_model_dir_written_now_carries_the_family_name(tmp_path):
    labels = write_labels(tmp_path / "lines", [LINES16[:8]])
    out = train_recognizer(labels, base="english_g2", max_minutes=2, out=tmp_path / "ft",
                           recipe={"augment": 0, "max_steps": 1, "val_every_steps": 1, "batch_size": 8})
    assert read_manifest(out)["engine"] == CTC and read_manifest(out)["recipe"]["loss"] == "CTC"
    assert json.loads((out / "config.json").read_text())["engine"] == CTC
    registry.clear_cache()
    assert registry.engine_of(str(out)) == CTC and load_recognizer(str(out)).alphabet[-1] in "→≥"
