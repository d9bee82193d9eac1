"""Puts the weights of DeepMind's released MMV checkpoints into mmv-tf networks.

`detect_backbone(checkpoint.params)` names the preset a checkpoint needs ("s3dg", "tsm_resnet50",
"tsm_resnet50x2"); `build_released_network(backbone)` builds it with the released text table's size;
`assign_released_weights(checkpoint, network)` fills every Keras weight from the checkpoint by an
explicit name map (DeepMind module path -> Keras layer path, `module_map`), never by position.

Leaves (`"<module>/<leaf>"`, `checkpoint.ReleasedCheckpoint`) and what they become:
- conv `w`: (T,H,W,in,out) or (H,W,in,out) -> Conv `kernel`, same layout; the text conv
  `text_conv1/w` (1,300,2048) -> Dense `kernel` (300,2048) (its `w[0]`);
- Linear `w` (in,out), `b` (out,) -> Dense `kernel`, `bias`;
- BN params `scale`, `offset` (1,...,1,C) -> `gamma`, `beta` (C,); BN state
  `~/mean_ema/average`, `~/var_ema/average` (1,...,1,C) -> `moving_mean`, `moving_variance` (C,)
  (inference reads the debiased `average`; `hidden` and `counter` are EMA internals, not weights);
- `embed/embeddings` (65536,300) -> the text table `word_vectors/embeddings`, row for row.

Token ids: the released word list is not in the checkpoint, so the network gets `RELEASED_VOCABULARY`,
65534 placeholder words, and its table len(vocabulary) + 2 = 65536 rows: DeepMind word id i is table
row i, so DeepMind's ids feed `{"token_ids": ids, "padding_mask": ids != 0}` unchanged. Row 0 is
padding in both (an ordinary row under the released max over all positions); row 1, mmv-tf's
out-of-vocabulary id, holds DeepMind's word 1; placeholder word `row<i>` names row i.

Not mapped: `audio2txt_embd` (audio's training-time vat head; its released width, 512, is not the
vat width) is dropped and reported; so `head/audio_to_vat_training` (used in training only) keeps its
initial values, reported as not filled.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmv_tf.config import deep_update
from mmv_tf.deepmind.checkpoint import CheckpointError, ReleasedCheckpoint
from mmv_tf.models.resnet_v2 import STAGE_BLOCKS
from mmv_tf.models.s3dg import INCEPTION_CHANNELS, S3DG
from mmv_tf.models.tsm import TemporalShift, TSMResNet

ROOT = "text_audio_video"
S3D = f"{ROOT}/visual_module/~/S3D"
TSM = f"{ROOT}/visual_module/~/TSMResNetV2"
AUDIO = f"{ROOT}/audio_module/~/res_net_v2"
TEXT = f"{ROOT}/text_module/~"
HEADS = f"{ROOT}/~_get_pair_embedding_heads"
DROPPED = f"{HEADS}/audio2txt_embd/"  # audio's training-time vat head: reported, not mapped
NOT_FILLED = {"head/audio_to_vat_training/kernel": "training only; its source audio2txt_embd is dropped",
              "head/audio_to_vat_training/bias": "training only; its source audio2txt_embd is dropped"}
BACKBONES = ("s3dg", "tsm_resnet50", "tsm_resnet50x2")
TABLE_ROWS = 65536
RELEASED_VOCABULARY = tuple(f"row{i}" for i in range(2, TABLE_ROWS))  # row i <- word "row<i>"
_STATS = {"~/mean_ema/average": "moving_mean", "~/var_ema/average": "moving_variance"}
# kind -> (params leaf -> Keras variable); BN also reads _STATS from the state.
_LEAVES = {"conv": {"w": "kernel"}, "conv1d": {"w": "kernel", "b": "bias"},
           "linear": {"w": "kernel", "b": "bias"}, "bn": {"scale": "gamma", "offset": "beta"},
           "embed": {"embeddings": "embeddings"}}


def detect_backbone(names: Mapping) -> str:
    """The preset a checkpoint's leaves need: "s3dg", "tsm_resnet50" or "tsm_resnet50x2".

    Args:
        names: leaf name -> array (or shape), e.g. `checkpoint.params`; TSM widths are told apart by
            the stem kernel, (7,7,3,64) for x1 and (7,7,3,128) for x2.
    Raises:
        CheckpointError: no or both video networks, or a TSM stem of another width.
    """
    s3d = any(name.startswith(f"{S3D}/") for name in names)
    tsm = any(name.startswith(f"{TSM}/") for name in names)
    if s3d == tsm:
        found = "both" if s3d else "neither"
        raise CheckpointError(f"not a released MMV checkpoint: it has {found} of the video networks "
                              f"{S3D!r} and {TSM!r}")
    if s3d:
        return "s3dg"
    stem = f"{TSM}/tsm_resnet_stem/w"
    if stem not in names:
        raise CheckpointError(f"TSM checkpoint without its stem kernel {stem!r}")
    value = names[stem]
    shape = tuple(value if isinstance(value, (tuple, list)) else np.shape(value))
    widths = {(7, 7, 3, 64): "tsm_resnet50", (7, 7, 3, 128): "tsm_resnet50x2"}
    if shape not in widths:
        raise CheckpointError(f"{stem} has shape {shape}: expected (7, 7, 3, 64) (TSM-ResNet50) or "
                              "(7, 7, 3, 128) (TSM-ResNet50x2)")
    return widths[shape]


def released_word_vectors(vocabulary: tuple[str, ...] = RELEASED_VOCABULARY):
    """`WordVectors` of `vocabulary` (the words of table rows 2..65535; zeros, 300-d): a text table
    of 65536 rows, which `assign_released_weights` fills from the checkpoint."""
    from mmv_tf.text.word_vectors import WordVectors

    vectors = np.zeros((len(vocabulary), 300), np.float32)
    return WordVectors(tuple(vocabulary), vectors, "deepmind-released-table")


def build_released_network(backbone: str, overrides: dict | None = None,
                           vocabulary: tuple[str, ...] = RELEASED_VOCABULARY):
    """`from_preset(backbone, ...)` with the released table's size (65534 words + 2 = 65536 rows);
    `vocabulary` names rows 2..65535 (placeholders by default: the released word list is not public).

    `overrides` (nested config fields, e.g. `{"video": {"num_frames": 8}}`) must keep the released
    form (the paper presets' defaults)."""
    from mmv_tf.models.presets import from_preset

    if backbone not in BACKBONES:
        raise CheckpointError(f"unknown released backbone {backbone!r}; one of {', '.join(BACKBONES)}")
    text = {"text": {"vocabulary_size": len(RELEASED_VOCABULARY), "word_vectors": "deepmind-released-table"}}
    return from_preset(backbone, deep_update(text, overrides or {}),
                       word_vectors=released_word_vectors(vocabulary))


def _s3d_modules() -> dict:
    """S3D-G: unit -> (Keras unit prefix, separable, gated)."""
    units = {"Conv2d_1a_7x7": ("Conv2d_1a", False, False), "Conv2d_2b_1x1": ("Conv2d_2b", False, False),
             "Conv2d_2c_3x3": ("Conv2d_2c", True, True)}
    branches = {"Branch_0_Conv2d_0a_1x1": ("b0_1x1", False, True),
                "Branch_1_Conv2d_0a_1x1": ("b1_1x1", False, False),
                "Branch_1_Conv2d_0b_3x3": ("b1_3x3", True, True),
                "Branch_2_Conv2d_0a_1x1": ("b2_1x1", False, False),
                "Branch_2_Conv2d_0b_3x3": ("b2_3x3", True, True),
                "Branch_3_Conv2d_0b_1x1": ("b3_1x1", False, True)}
    for block in INCEPTION_CHANNELS:
        units.update({f"{block}/{dm}": (f"{block}_{k}", separable, gated)
                      for dm, (k, separable, gated) in branches.items()})
    modules = {}
    for dm, (k, separable, gated) in units.items():
        src, dst = f"{S3D}/{dm}", f"video_encoder/{k}"
        first = "spatial" if separable else "conv"
        modules[f"{src}/~/conv3_d"] = (f"{dst}_{first}", "conv")
        modules[f"{src}/__cross_replica_batch_norm"] = (f"{dst}_{first}_bn", "bn")
        if separable:
            modules[f"{src}/~/conv3_d_1"] = (f"{dst}_temporal", "conv")
            modules[f"{src}/__cross_replica_batch_norm_1"] = (f"{dst}_temporal_bn", "bn")
        if gated:
            modules[f"{src}/self_gating"] = (f"{dst}_gating/dense", "linear")
    return modules


def _resnet_modules(src: str, dst: str, stem: str, block: str, conv: str) -> dict:
    """ResNet-50 v2 (audio, TSM): DeepMind block j of group i -> Keras `stage{i+1}_block{j+1}`."""
    modules = {f"{src}/{stem}": (f"{dst}/stem_conv", "conv"),
               f"{src}/__cross_replica_batch_norm": (f"{dst}/final_bn", "bn")}
    for i, blocks in enumerate(STAGE_BLOCKS):
        for j in range(blocks):
            s, d = f"{src}/{block.format(i=i, j=j)}", f"{dst}/stage{i + 1}_block{j + 1}"
            convs = ["conv_0", "conv_1", "conv_2"] + (["shortcut_conv"] if j == 0 else [])
            for c, keras_name in zip(convs, ("conv1", "conv2", "conv3", "shortcut")):
                modules[f"{s}/{conv}{c}"] = (f"{d}_{keras_name}", "conv")
            for suffix, keras_name in (("", "preact_bn"), ("_1", "bn1"), ("_2", "bn2")):
                modules[f"{s}/__cross_replica_batch_norm{suffix}"] = (f"{d}_{keras_name}", "bn")
    return modules


def module_map(backbone: str) -> dict[str, tuple[str, str]]:
    """DeepMind module path -> (Keras layer path, kind) for a released network with `backbone`.

    Keras paths start at the MMV attribute (`video_encoder`, `audio_encoder`, `text_encoder`, `head`),
    then name layers (`get_layer`) or attributes (e.g. `video_encoder/Mixed_3b_b0_1x1_gating/dense`).
    Kinds: "conv", "conv1d" (kernel-1 conv as Dense), "linear", "bn", "embed" (see `_LEAVES`)."""
    video = _s3d_modules() if backbone == "s3dg" else _resnet_modules(
        TSM, "video_encoder", "tsm_resnet_stem", "tsm_resnet_unit_{i}/block_{j}", "")
    audio = _resnet_modules(AUDIO, "audio_encoder", "~/initial_conv", "~/block_group_{i}/block_{j}", "~/")
    heads = {
        "vid2audio_embd/final_projection_inner": ("head/video_to_va/video_to_va_dense1", "linear"),
        "vid2audio_embd/__cross_replica_batch_norm": ("head/video_to_va/video_to_va_bn1", "bn"),
        "vid2audio_embd/final_projection": ("head/video_to_va/video_to_va_dense2", "linear"),
        "vid2audio_embd/__cross_replica_batch_norm_1": ("head/video_to_va/video_to_va_bn2", "bn"),
        "vis_embd/final_projection": ("head/va_to_vat/va_to_vat_dense", "linear"),
        "vis_embd/__cross_replica_batch_norm": ("head/va_to_vat/va_to_vat_bn", "bn"),
        "audio_embd/final_projection": ("head/audio_to_va/audio_to_va_dense", "linear"),
        "txt_embd/final_projection": ("head/text_to_vat/text_to_vat_dense", "linear"),
        "txt2audio_embd/final_projection": ("head/text_to_va", "linear"),
    }
    text = {f"{TEXT}/embed": ("text_encoder/word_vectors", "embed"),
            f"{TEXT}/text_conv1": ("text_encoder/projection", "conv1d")}
    return {**video, **audio, **text, **{f"{HEADS}/{k}": v for k, v in heads.items()}}


def _layer(network, path: str):
    """The layer at Keras `path` (see `module_map`), or None."""
    node = network
    for part in path.split("/"):
        child = None
        if hasattr(node, "get_layer") and node is not network:
            try:
                child = node.get_layer(part)
            except ValueError:
                child = None
        node = child if child is not None else getattr(node, part, None)
        if node is None:
            return None
    return node


def _fit(value: np.ndarray, shape: tuple, kind: str):
    """`value` in Keras `shape` (BN (1,...,1,C) -> (C,); text conv (1,in,out) -> (in,out)), or None."""
    if value.shape == shape:
        return value
    lead = value.ndim - len(shape)
    if kind in ("bn", "conv1d") and lead > 0 and value.shape[lead:] == shape and \
            all(d == 1 for d in value.shape[:lead]):
        return value.reshape(shape)
    return None


def network_backbone(network) -> str | None:
    """The released backbone whose layout `network`'s video tower has (None: none of them)."""
    tower = network.video_encoder
    width = tower.get_config().get("width")
    if isinstance(tower, S3DG) and width == 1:
        return "s3dg"
    if isinstance(tower, TSMResNet) and width in (1, 2):
        return {1: "tsm_resnet50", 2: "tsm_resnet50x2"}[width]
    return None


def _released_form(network) -> list[str]:
    """What in `network` computes otherwise than the released model though the weights fit."""
    problems = []
    pooling = getattr(network.text_encoder, "pooling", None)
    if pooling != "all":
        problems.append(f"text pooling is {pooling!r}, the release takes the max over all positions "
                        "('all')")
    layouts = {layer.layout for layer in network.video_encoder.layers if isinstance(layer, TemporalShift)}
    if layouts - {"released"}:
        problems.append(f"TSM shift layout {sorted(layouts)}, the release's is 'released'")
    return problems


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}):\n  " + "\n  ".join(items[:limit]) + more


def assign_released_weights(checkpoint: ReleasedCheckpoint, network) -> dict:
    """Sets every Keras weight of `network` from `checkpoint`, all or nothing.

    Args:
        checkpoint: a `ReleasedCheckpoint` (`read_checkpoint`): `params`, `state` keyed "<module>/<leaf>".
        network: an `MMV` of the detected backbone's preset in the released form, with a 65536-row
            text table (`build_released_network(detect_backbone(checkpoint.params))`).
    Returns:
        A report: `backbone`, `params_used` / `state_used` (leaves), `weights_filled` (Keras),
        `dropped` (audio2txt_embd leaves), `ignored_state` (EMA `hidden`/`counter` leaves),
        `not_filled` ({Keras weight: why}), `token_ids`, `sha256`.
    Raises:
        CheckpointError: before changing any weight, listing every leaf the map misses or that the
            checkpoint lacks, every shape that does not fit (leaf, its shape, the Keras shape), and
            every Keras weight left unfilled; also a network of another backbone or form.
    """
    backbone = detect_backbone(checkpoint.params)
    built = network_backbone(network)
    if built != backbone:
        raise CheckpointError(f"{checkpoint.path} holds a released {backbone} network, but the network's "
                              f"video tower is {built or 'none of the released ones'}: build it with "
                              f"build_released_network({backbone!r})")
    modules = module_map(backbone)
    problems = _released_form(network)
    missing, shapes, assignments, layers_missing = [], [], [], []
    used, accounted = set(), set()
    for module, (path, kind) in modules.items():
        layer = _layer(network, path)
        variables = {v.name: v for v in getattr(layer, "weights", [])}
        if layer is None or not variables:
            layers_missing.append(f"{module} -> {path}")
            continue
        sources = [(checkpoint.params, f"{module}/{leaf}", var) for leaf, var in _LEAVES[kind].items()
                   if var in variables]
        if kind == "bn":
            sources += [(checkpoint.state, f"{module}/{leaf}", var) for leaf, var in _STATS.items()]
        for tree, leaf, var in sources:
            target = variables[var]
            accounted.add(id(target))  # filled, or its leaf reported missing or misfit
            if leaf not in tree:
                missing.append(f"{leaf} (for Keras {path}/{var})")
                continue
            used.add(leaf)
            value = _fit(np.asarray(tree[leaf]), tuple(target.shape), kind)
            if value is None:
                shapes.append(f"{leaf} has shape {tuple(np.shape(tree[leaf]))}, Keras {path}/{var} "
                              f"needs {tuple(target.shape)}")
            else:
                assignments.append((f"{path}/{var}", target, value))
    dropped = sorted(n for n in (*checkpoint.params, *checkpoint.state) if n.startswith(DROPPED))
    ignored = sorted(n for n in checkpoint.state if n.rsplit("/", 1)[-1] in ("hidden", "counter")
                     and not n.startswith(DROPPED))
    unused = sorted(n for n in checkpoint.params if n not in used and not n.startswith(DROPPED)) + sorted(
        n for n in checkpoint.state if n not in used and not n.startswith(DROPPED) and n not in ignored)
    named = [(f"{part}/{v.path.split('/', 1)[1] if part == 'head' else v.path}", v)
             for part in ("video_encoder", "audio_encoder", "text_encoder", "head")
             for v in getattr(network, part).weights]
    unfilled = sorted(name for name, v in named if id(v) not in accounted and name not in NOT_FILLED)
    not_filled = {name: NOT_FILLED[name] for name, v in named if name in NOT_FILLED}
    errors = [text for text in (
        problems and _listing("the network is not in the released form", problems),
        layers_missing and _listing(f"layers the {backbone} map needs that the network lacks (build it "
                                    f"with build_released_network({backbone!r}))", layers_missing),
        missing and _listing("leaves the checkpoint lacks", missing),
        unused and _listing("checkpoint leaves with no place in the network",
                            [f"{n} {tuple(np.shape(checkpoint.params.get(n, checkpoint.state.get(n))))}"
                             for n in unused]),
        shapes and _listing("shapes that do not fit", shapes),
        unfilled and _listing("Keras weights no leaf fills", unfilled)) if text]
    if errors:
        raise CheckpointError(f"{checkpoint.path}: cannot assign the released {backbone} weights:\n"
                              + "\n".join(errors))
    for _, target, value in assignments:
        target.assign(value.astype(np.float32))
    return {"backbone": backbone, "params_used": len(used & set(checkpoint.params)),
            "state_used": len(used & set(checkpoint.state)), "weights_filled": len(assignments),
            "dropped": dropped, "ignored_state": len(ignored), "not_filled": not_filled,
            "token_ids": "DeepMind word id i is text table row i (0: padding; 1: mmv-tf's OOV id)",
            "sha256": checkpoint.sha256}
