"""`mmv_tf.spaces`, the table of which space serves which modalities, and the heads, losses, exported
metadata, search and app that read it."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SMALL_MODEL

from mmv_tf import spaces
from mmv_tf.app.search_app import SearchService
from mmv_tf.errors import InputError
from mmv_tf.export import describe_network
from mmv_tf.losses import mil_nce, mmv_loss, nce
from mmv_tf.models.heads import make_head
from mmv_tf.models.presets import from_preset
from mmv_tf.search import space_between

PAIRS = [("video", "audio"), ("video", "text"), ("audio", "text")]
# design -> {modality: spaces}, and the space of each pair of PAIRS: the paper's Figure 2.
TABLE = {
    "shared": ({"video": ("vat",), "audio": ("vat",), "text": ("vat",)}, ("vat", "vat", "vat")),
    "disjoint": ({"video": ("va", "vt"), "audio": ("va",), "text": ("vt",)}, ("va", "vt", None)),
    "fac": ({"video": ("va", "vat"), "audio": ("va", "vat"), "text": ("vat",)}, ("va", "vat", "vat")),
}


@pytest.mark.parametrize("design", sorted(TABLE))
def test_the_table_per_design(design):
    embedded, pair_spaces = TABLE[design]
    for modality, expected in embedded.items():
        assert spaces.spaces_of(design, modality) == expected
    for (a, b), expected in zip(PAIRS, pair_spaces):
        assert spaces.pair_space(design, a, b) == spaces.pair_space(design, b, a) == expected
    for modality in spaces.MODALITIES:  # a modality meets itself in its finest space
        assert spaces.pair_space(design, modality, modality) == embedded[modality][0]
    named = spaces.pair_spaces(design)
    assert len(named) == 9 - 2 * pair_spaces.count(None)
    assert all(named[f"{a}-{b}"] == spaces.pair_space(design, a, b) for a, b in PAIRS
               if spaces.pair_space(design, a, b))


def test_fac_text_to_va_adds_an_output_and_moves_no_pair():
    assert spaces.head_spaces("fac", text_to_va=True) == {"va": spaces.MODALITIES, "vat": spaces.MODALITIES}
    assert spaces.spaces_of("fac", "text", text_to_va=True) == ("va", "vat")
    assert spaces.pair_space("fac", "video", "text") == "vat"
    with pytest.raises(ValueError, match="option of the fac head"):
        spaces.head_spaces("shared", text_to_va=True)


@pytest.mark.parametrize("design,options", [("shared", {}), ("disjoint", {}), ("fac", {}),
                                            ("fac", {"text_to_va": True})])
def test_heads_embed_each_modality_in_the_spaces_of_the_table(design, options):
    head = make_head(design, va_dim=6, vat_dim=4, **options)
    head.build({"video": (None, 5), "audio": (None, 7), "text": (None, 3)})
    rng = np.random.default_rng(0)
    reps = {m: rng.normal(size=(2, d)).astype("float32") for m, d in (("video", 5), ("audio", 7),
                                                                       ("text", 3))}
    outputs = head(reps, training=False)
    for modality in spaces.MODALITIES:
        expected = spaces.spaces_of(design, modality, **options)
        assert head.spaces_of(modality) == expected
        assert sorted(outputs[modality]) == sorted(expected)
        assert all(outputs[modality][s].shape == (2, 6 if s == "va" else 4) for s in expected)
    for a, b in PAIRS:
        assert head.space_for(a, b) == type(head).space_for(a, b) == spaces.pair_space(design, a, b)


@pytest.mark.parametrize("design", sorted(TABLE))
def test_the_losses_compare_each_pair_in_its_space(design):
    rng = np.random.default_rng(1)
    outputs = {m: {s: rng.normal(size=(4, 2, 6) if m == "text" else (4, 6)).astype("float32")
                   for s in spaces.spaces_of(design, m)} for m in spaces.MODALITIES}
    terms = mmv_loss(outputs, design=design)
    va, vt = spaces.pair_space(design, "video", "audio"), spaces.pair_space(design, "video", "text")
    assert float(terms["nce_va"]) == pytest.approx(float(nce(outputs["video"][va],
                                                             outputs["audio"][va])), rel=1e-6)
    assert float(terms["mil_nce_vt"]) == pytest.approx(float(mil_nce(outputs["video"][vt],
                                                                     outputs["text"][vt])), rel=1e-6)


def metadata_of(design: str, text_to_va: bool = False) -> dict:
    """An exported model's `spaces` and `pair_spaces`, as export writes them."""
    sizes = {"va": 512, "vt": 256, "vat": 256}
    return {"head_design": design, "pair_spaces": spaces.pair_spaces(design),
            "spaces": {m: {s: sizes[s] for s in spaces.spaces_of(design, m, text_to_va)}
                       for m in spaces.MODALITIES}}


@pytest.mark.parametrize("design,text_to_va", [("shared", False), ("disjoint", False), ("fac", False),
                                               ("fac", True)])
def test_search_and_the_app_compare_where_the_design_does(design, text_to_va):
    metadata = metadata_of(design, text_to_va)
    for a, b in PAIRS:
        expected = spaces.pair_space(design, a, b)
        for query, target in ((a, b), (b, a)):
            if expected is None:
                with pytest.raises(InputError, match="no common space"):
                    space_between(metadata, query, target)
            else:
                assert space_between(metadata, query, target) == expected
    described = SearchService.pairs(SimpleNamespace(model=SimpleNamespace(metadata=metadata)))
    assert described == ", ".join(f"{a}-{b} in {s}" for a, b, s in (
        ("audio", "video", spaces.pair_space(design, "audio", "video")),
        ("text", "video", spaces.pair_space(design, "text", "video")),
        ("text", "audio", spaces.pair_space(design, "text", "audio"))) if s)
    # A deflated image model: images are compared where the video they stand for is.
    image = {**metadata, "spaces": {"image": metadata["spaces"]["video"], "text": metadata["spaces"]["text"]}}
    assert spaces.model_pair_space(image, "image", "text") == spaces.pair_space(design, "video", "text")


def test_a_model_exported_before_pair_spaces_is_compared_in_the_finest_shared_space():
    metadata = metadata_of("fac")
    del metadata["pair_spaces"]
    assert [space_between(metadata, a, b) for a, b in PAIRS] == ["va", "vat", "vat"]
    assert spaces.shared_spaces(metadata, "video", "audio") == ["va", "vat"]


@pytest.mark.parametrize("design", sorted(TABLE))
def test_exported_metadata_records_the_table(design, small_word_vectors):
    overrides = copy.deepcopy(SMALL_MODEL)
    overrides["head"]["design"] = design
    described = describe_network(from_preset("s3dg_tiny", overrides, small_word_vectors))
    assert described["pair_spaces"] == spaces.pair_spaces(design)
    assert {m: tuple(s) for m, s in described["spaces"].items()} == {
        m: spaces.spaces_of(design, m) for m in spaces.MODALITIES}
