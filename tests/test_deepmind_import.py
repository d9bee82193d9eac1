"""Released MMV checkpoints -> mmv-tf networks (`mmv_tf.deepmind.mapping`), checked against DeepMind's
own outputs.

`fixtures/deepmind/mmv_{s3d,tsm_resnet_x1,tsm_resnet_x2}_ref.npz` are copies of the reference
fixtures in shared/reference/deepmind (README there: DeepMind's model run in inference mode on seeded
weights) keeping what these tests read:
- `meta` (json): `seed`, `param_rule` and `param_shapes`, which redraw every parameter leaf (`draw`);
- `state/<module>/~/{mean,var}_ema/average`: the BN statistics (`hidden` and `counter` are rebuilt
  here as the released files hold them: counter 1, hidden a tenth of average);
- inputs `in/video` [1,8,64,64,3], `in/audio_spectrogram` [1,96,40,1], `in/word_ids` [2,16] (row 1
  padded with id 0), and DeepMind's float32 outputs `{video,audio}/{before_head,va,vat}`,
  `text/{before_head,vat,va}` (`text/va` is `txt2audio_embd`).
Each network is built and filled once (module fixture `imported`); x2 takes about 10 s here.
"""

import dataclasses
import json
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest

from mmv_tf.deepmind.checkpoint import CheckpointError, ReleasedCheckpoint
from mmv_tf.deepmind.mapping import (
    RELEASED_VOCABULARY,
    assign_released_weights,
    build_released_network,
    detect_backbone,
)

FIXTURES = Path(__file__).parent / "fixtures" / "deepmind"
NETWORKS = {"s3d": "s3dg", "tsm_resnet_x1": "tsm_resnet50", "tsm_resnet_x2": "tsm_resnet50x2"}
OUTPUTS = [f"{m}/{s}" for m in ("video", "audio", "text") for s in ("before_head", "va", "vat")]
VIDEO_STEM = {"s3dg": "text_audio_video/visual_module/~/S3D/Conv2d_1a_7x7/~/conv3_d/w",
              "tsm_resnet50": "text_audio_video/visual_module/~/TSMResNetV2/tsm_resnet_stem/w",
              "tsm_resnet50x2": "text_audio_video/visual_module/~/TSMResNetV2/tsm_resnet_stem/w"}
# A video conv kernel of each network that detect_backbone does not read.
VIDEO_LEAF = {"s3dg": "text_audio_video/visual_module/~/S3D/Mixed_5c/Branch_1_Conv2d_0b_3x3/~/conv3_d_1/w",
              "tsm_resnet50": "text_audio_video/visual_module/~/TSMResNetV2/tsm_resnet_unit_3/block_0/"
                              "shortcut_conv/w"}
VIDEO_LEAF["tsm_resnet50x2"] = VIDEO_LEAF["tsm_resnet50"]
HEADS = "text_audio_video/~_get_pair_embedding_heads"


def draw(meta: dict, name: str) -> np.ndarray:
    """Parameter leaf `name` as the reference run drew it (`meta["param_rule"]`)."""
    return draw_leaf(meta["seed"], name, tuple(meta["param_shapes"][name]))


def draw_leaf(seed: int, name: str, shape: tuple) -> np.ndarray:
    """The reference fixtures' rule for leaf `name` (`module/leaf`) of `shape`."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.rsplit("/", 1)[1]
    if leaf == "w":
        value = np.clip(rng.standard_normal(shape), -2, 2) / np.sqrt(np.prod(shape[:-1])) / 0.87962566
    elif leaf in ("b", "offset"):
        value = rng.normal(0, 0.1, shape)
    elif leaf == "scale":
        value = rng.uniform(0.7, 1.3, shape)
    elif leaf == "embeddings":
        value = rng.normal(0, 0.15, shape)
    else:
        raise KeyError(name)
    return value.astype(np.float32)


def reference_checkpoint(fixture: str) -> tuple[ReleasedCheckpoint, dict]:
    """The redrawn checkpoint (every leaf a released file has) and the fixture's other arrays."""
    path = FIXTURES / f"mmv_{fixture}_ref.npz"
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    params = {name: draw(meta, name) for name in meta["param_shapes"]}
    state = {}
    for key in [k for k in arrays if k.startswith("state/")]:
        average = arrays.pop(key)
        ema = key[len("state/"):-len("average")]
        state.update({f"{ema}average": average, f"{ema}hidden": average * np.float32(0.1),
                      f"{ema}counter": np.array(1, np.int32)})
    return ReleasedCheckpoint(params, state, sha256="redrawn", path=path), arrays


pytestmark = pytest.mark.usefixtures("no_tf32")


@pytest.fixture(scope="module", params=list(NETWORKS))
def imported(request):
    """(fixture name, checkpoint, arrays, network, report, outputs) for one released network."""
    checkpoint, arrays = reference_checkpoint(request.param)
    backbone = detect_backbone(checkpoint.params)
    # The fixtures' clips have 8 frames and their spectrograms 40 mel bins; neither changes a weight.
    network = build_released_network(backbone, {"video": {"num_frames": 8}, "audio": {"num_mel_bins": 40}})
    report = assign_released_weights(checkpoint, network)
    ids = arrays["in/word_ids"]  # DeepMind word ids are our table rows (RELEASED_VOCABULARY)
    outputs = network({"video": arrays["in/video"], "audio_spectrogram": arrays["in/audio_spectrogram"],
                       "text": {"token_ids": ids, "padding_mask": ids != 0}}, training=False)
    outputs = {f"{m}/{s}": keras.ops.convert_to_numpy(x) for m, o in outputs.items() for s, x in o.items()}
    return request.param, checkpoint, arrays, network, report, outputs


def test_detects_each_backbone_and_the_network_outputs_match_deepmind(imported):
    fixture, checkpoint, arrays, network, _, outputs = imported
    assert detect_backbone(checkpoint.params) == NETWORKS[fixture]
    assert sorted(outputs) == sorted(OUTPUTS)
    errors = {}
    for key in OUTPUTS:
        want = arrays[key]
        assert outputs[key].shape == want.shape, key
        errors[key] = float(np.abs(outputs[key] - want).max() / np.abs(want).max())
    assert all(error <= 2e-3 for error in errors.values()), f"{fixture}: max|error| / max|ref| {errors}"


def test_report_names_what_was_dropped_ignored_and_left(imported):
    _, checkpoint, _, network, report, _ = imported
    dropped = [f"{HEADS}/audio2txt_embd/final_projection/{leaf}" for leaf in ("b", "w")]
    assert report["dropped"] == dropped
    assert report["params_used"] == len(checkpoint.params) - len(dropped)
    assert report["ignored_state"] == 2 * report["state_used"] == 2 * len(checkpoint.state) // 3
    assert sorted(report["not_filled"]) == ["head/audio_to_vat_training/bias",
                                            "head/audio_to_vat_training/kernel"]
    assert report["weights_filled"] == len(network.weights) - 2
    table = network.text_encoder.get_layer("word_vectors").embeddings
    assert len(RELEASED_VOCABULARY) + 2 == table.shape[0] == 65536
    # Row for row, padding row 0 included: DeepMind id i is token id i.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(table[:3]),
                                  checkpoint.params["text_audio_video/text_module/~/embed/embeddings"][:3])


def edited(checkpoint: ReleasedCheckpoint, params=None, state=None) -> ReleasedCheckpoint:
    return dataclasses.replace(checkpoint, params={**checkpoint.params, **(params or {})},
                               state={**checkpoint.state, **(state or {})})


def without(checkpoint: ReleasedCheckpoint, leaf: str) -> ReleasedCheckpoint:
    tree = "params" if leaf in checkpoint.params else "state"
    kept = {k: v for k, v in getattr(checkpoint, tree).items() if k != leaf}
    return dataclasses.replace(checkpoint, **{tree: kept})


def assert_refused(checkpoint, network, *needles):
    """CheckpointError naming every needle, and no weight changed."""
    before = [np.array(w) for w in network.weights[:3] + network.weights[-6:]]
    with pytest.raises(CheckpointError) as error:
        assign_released_weights(checkpoint, network)
    for needle in needles:
        assert needle in str(error.value)
    after = [np.array(w) for w in network.weights[:3] + network.weights[-6:]]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    return str(error.value)


def test_a_missing_leaf_is_refused_by_name(imported):
    fixture, checkpoint, _, network, _, _ = imported
    leaf = VIDEO_LEAF[NETWORKS[fixture]]
    message = assert_refused(without(checkpoint, leaf), network, "leaves the checkpoint lacks", leaf)
    assert "Keras weights" not in message  # the lack is told once, as the leaf
    statistic = "text_audio_video/audio_module/~/res_net_v2/__cross_replica_batch_norm/~/var_ema/average"
    assert_refused(without(checkpoint, statistic), network, statistic,
                   "audio_encoder/final_bn/moving_variance")
    head = f"{HEADS}/vis_embd/final_projection/b"
    assert_refused(without(checkpoint, head), network, head, "head/va_to_vat/va_to_vat_dense/bias")


def test_an_extra_leaf_is_refused_by_name(imported):
    _, checkpoint, _, network, _, _ = imported
    extra = "text_audio_video/visual_module/~/extra_unit/~/conv3_d/w"
    assert_refused(edited(checkpoint, params={extra: np.zeros((1, 1, 1, 4, 4), np.float32)}), network,
                   "no place in the network", f"{extra} (1, 1, 1, 4, 4)")
    extra_stat = f"{HEADS}/txt_embd/__cross_replica_batch_norm/~/mean_ema/average"
    assert_refused(edited(checkpoint, state={extra_stat: np.zeros((1, 256), np.float32)}), network,
                   "no place in the network", extra_stat)


def test_a_wrong_shape_is_refused_naming_leaf_and_both_shapes(imported):
    fixture, checkpoint, _, network, _, _ = imported
    leaf = VIDEO_LEAF[NETWORKS[fixture]]
    shape = checkpoint.params[leaf].shape
    wrong = shape[:-1] + (shape[-1] + 1,)
    assert_refused(edited(checkpoint, params={leaf: np.zeros(wrong, np.float32)}), network,
                   "shapes that do not fit", f"{leaf} has shape {wrong}", f"needs {shape}")
    scale = f"{HEADS}/vis_embd/__cross_replica_batch_norm/scale"
    assert_refused(edited(checkpoint, params={scale: np.zeros((2, 128), np.float32)}), network,
                   f"{scale} has shape (2, 128)", "head/va_to_vat/va_to_vat_bn/gamma needs (256,)")


def test_a_checkpoint_of_another_backbone_is_refused(imported):
    fixture, _, _, network, _, _ = imported
    other = {"s3dg": "tsm_resnet50", "tsm_resnet50": "tsm_resnet50x2", "tsm_resnet50x2": "s3dg"}
    backbone = other[NETWORKS[fixture]]
    shape = {"s3dg": (2, 4, 4, 24, 64), "tsm_resnet50": (7, 7, 3, 64), "tsm_resnet50x2": (7, 7, 3, 128)}
    checkpoint = ReleasedCheckpoint({VIDEO_STEM[backbone]: np.zeros(shape[backbone], np.float32)}, {},
                                    sha256="", path=Path("other.pkl"))
    assert_refused(checkpoint, network, f"holds a released {backbone} network",
                   f"video tower is {NETWORKS[fixture]}", f"build_released_network({backbone!r})")


def test_detect_backbone_refuses_what_is_not_a_released_network():
    with pytest.raises(CheckpointError, match="neither of the video networks"):
        detect_backbone({"text_audio_video/text_module/~/embed/embeddings": np.zeros((2, 3))})
    both = {VIDEO_STEM["s3dg"]: (2, 4, 4, 24, 64), VIDEO_STEM["tsm_resnet50"]: (7, 7, 3, 64)}
    with pytest.raises(CheckpointError, match="both of the video networks"):
        detect_backbone(both)
    assert detect_backbone({VIDEO_STEM["tsm_resnet50"]: (7, 7, 3, 128)}) == "tsm_resnet50x2"
    with pytest.raises(CheckpointError, match=r"tsm_resnet_stem/w has shape \(7, 7, 3, 32\)"):
        detect_backbone({VIDEO_STEM["tsm_resnet50"]: np.zeros((7, 7, 3, 32))})
    with pytest.raises(CheckpointError, match="TSM checkpoint without its stem kernel"):
        detect_backbone({VIDEO_LEAF["tsm_resnet50"]: (1, 1, 1024, 2048)})
