"""`mmv-tf`: train, export and search multimodal versatile networks.

Each command parses its options, calls one library function and prints what it returns; input
errors become one line (`command`). Heavy imports (TensorFlow, Keras) happen inside commands, so
`--help` is fast.
"""

import functools
import json
import os
from pathlib import Path

import typer

from mmv_tf.saved_model import DEFAULT_MODEL

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

app = typer.Typer(
    name="mmv-tf",
    help="Multimodal Versatile networks in Keras 3 / TensorFlow: video, audio and text "
    "in shared embedding spaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


OVERWRITE = typer.Option(False, "--overwrite", help="Replace --out even if mmv-tf did not write it "
                                                    "(its files are deleted).")
MODEL = typer.Option(DEFAULT_MODEL, "--model", help="Exported model folder.")


def json_option(instead_of: str = "a table"):
    """The `--json` flag: print JSON instead of `instead_of`."""
    return typer.Option(False, "--json", help=f"Print JSON instead of {instead_of}.")


def group(name: str, help: str) -> typer.Typer:
    """A command group `mmv-tf NAME ...`."""
    commands = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(commands, name=name)
    return commands


def _note(line: str) -> None:
    """A note of a library function (image conversions, skipped files, ...), on stderr."""
    typer.echo(f"note: {line}", err=True)


def _one_line_error(error: BaseException) -> str | None:
    """The one-line message of an error the user can act on, or None for a bug (shown in full).

    Ours (`InputError`, a diverged loss), the system's (a missing file, a full or read-only disk,
    a permission) and file-format errors of the libraries that read users' files (TensorFlow,
    Arrow), each of which names the file."""
    from mmv_tf.errors import InputError, NonFiniteLossError

    if isinstance(error, (InputError, NonFiniteLossError)):
        return str(error)
    if isinstance(error, OSError):
        where = error.filename or error.filename2
        return f"{where}: {error.strerror}" if where and error.strerror else str(error)
    library = type(error).__module__.split(".")[0]
    if library in ("tensorflow", "pyarrow"):
        return str(getattr(error, "message", None) or error)
    return None


def reports_input_errors(function):
    """Show an error the user can act on (`_one_line_error`) as one line on stderr, and exit with 1."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            message = _one_line_error(error)
            if message is None:
                raise
            typer.secho(f"error: {' '.join(message.split())}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


def command(commands: typer.Typer = app, name: str | None = None):
    """Register a command of `commands` whose input errors are one line (`reports_input_errors`)."""
    def register(function):
        return commands.command(name)(reports_input_errors(function))
    return register


data_app = group("data", "Make, ingest and inspect video corpora.")


@app.callback()
def _root() -> None:
    """Multimodal Versatile networks: video, audio and text in shared embedding spaces."""


@command()
def presets(as_json: bool = json_option()) -> None:
    """List the model presets: backbone, trainable parameters per tower and head, output sizes."""
    from mmv_tf.models.presets import PRESETS, describe_preset

    rows = [describe_preset(name) for name in PRESETS]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mmv-tf presets")
    for column in ("preset", "video", "clip", "trainable params (M)\nvideo/audio/text/head",
                   "before_head\nvideo/audio/text", "spaces"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        params, dims, clip = row["trainable_parameters"], row["output_dims"], row["input"]
        spaces = {s: d for m in dims.values() for s, d in m.items() if s != "before_head"}
        table.add_row(
            row["name"], row["video_backbone"],
            f"{clip['frames']}x{clip['image_size']}px {clip['sample_rate'] // 1000}kHz",
            "/".join(f"{params[p] / 1e6:.2f}" for p in ("video", "audio", "text", "head")),
            "/".join(str(dims[m]["before_head"]) for m in ("video", "audio", "text")),
            f"{row['head']}: " + " ".join(f"{s}={d}" for s, d in sorted(spaces.items())),
        )
    Console().print(table)


@command(data_app, "demo")
def data_demo(
    out: Path = typer.Option(..., "--out", help="Folder to write videos/, subtitles and manifest.jsonl."),
    videos: int = typer.Option(1000, "--videos", min=1, help="Number of videos."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same corpus."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per core, up to 8)."),
) -> None:
    """Generate the narrated demo corpus: digits moving over textures, spoken by espeak-ng."""
    from mmv_tf.data.demo import generate_demo_corpus

    manifest = generate_demo_corpus(out, videos, seed, workers=workers or None)
    typer.echo(f"wrote {videos} videos and {manifest}")


@command(data_app, "digits")
def data_digits(
    out: Path = typer.Option(..., "--out", help="Folder to write, one sub-folder per digit."),
    split: str = typer.Option("test", "--split", help="Whose digit images: train, val or test "
                                                      "(test: unseen in training)."),
    per_class: int = typer.Option(30, "--per-class", min=2, help="Images per digit."),
    seed: int = typer.Option(0, "--seed", help="Seed (the corpus's seed keeps the splits apart)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write still pictures of the demo's handwritten digits, labelled by folder, for classification."""
    from mmv_tf.data.demo import write_digit_images

    if split not in ("train", "val", "test"):
        raise typer.BadParameter(f"split must be train, val or test; got {split!r}")
    write_digit_images(out, split, per_class, seed, overwrite=overwrite)
    typer.echo(f"wrote {10 * per_class} digit images ({split} split) into {out}")


DEMO_CORPUS = typer.Argument(..., help="Demo corpus folder with manifest.jsonl (from `mmv-tf data demo`).")
EXPORT_SPLITS = typer.Option(["train", "test"], "--split", help="A split to export: train, val or test "
                                                                "(repeat the option for several).")


def _counts(per_split: dict[str, int]) -> str:
    """'12 train, 3 test'."""
    return ", ".join(f"{count} {split}" for split, count in per_split.items())


@command(data_app, "clips")
def data_clips(
    corpus: Path = DEMO_CORPUS,
    out: Path = typer.Option(..., "--out", help="Folder to write: one sub-folder of .mp4 clips per class "
                                                "and one SPLIT.txt list of clip paths per split."),
    splits: list[str] = EXPORT_SPLITS,
    label: str = typer.Option("digit", "--label", help="A clip's class: digit (its word), direction, or "
                                                       "event (word_direction)."),
    margin: float = typer.Option(0.25, "--margin", min=0.0, help="Seconds of video kept before and after "
                                                                 "each event."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Cut one labelled video clip per event of the demo corpus, in class folders with split lists."""
    from mmv_tf.data.exports import write_labelled_clips

    summary = write_labelled_clips(corpus, out, splits, label, margin, overwrite=overwrite)
    typer.echo(f"wrote {sum(summary['clips'].values())} clips ({_counts(summary['clips'])}) in "
               f"{len(summary['classes'])} {label} classes into {out}")


@command(data_app, "captions")
def data_captions(
    corpus: Path = DEMO_CORPUS,
    out: Path = typer.Option(..., "--out", help="Folder to write: videos/ and manifest.jsonl, one record "
                                                "per narrated event."),
    split: str = typer.Option("test", "--split", help="Whose videos: train, val or test."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Copy a split's demo videos with one caption record per narrated event, for text-to-video retrieval."""
    from mmv_tf.data.exports import write_captioned_clips

    summary = write_captioned_clips(corpus, out, split, overwrite=overwrite)
    typer.echo(f"wrote {summary['captions']} captions of {summary['videos']} videos ({split} split) "
               f"into {out}")


@command(data_app, "sounds")
def data_sounds(
    corpus: Path = DEMO_CORPUS,
    out: Path = typer.Option(..., "--out", help="Folder to write: one sub-folder of .wav narrations per "
                                                "digit and one SPLIT.txt list per split."),
    splits: list[str] = EXPORT_SPLITS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Cut each narration of the demo corpus out of its video's audio, as WAV files labelled by digit."""
    from mmv_tf.data.exports import write_labelled_sounds

    summary = write_labelled_sounds(corpus, out, splits, overwrite=overwrite)
    typer.echo(f"wrote {sum(summary['sounds'].values())} sounds ({_counts(summary['sounds'])}) in "
               f"{len(summary['classes'])} digit classes into {out}")


@command(data_app, "ingest")
def data_ingest(
    src: Path = typer.Argument(..., help="Folder of videos (with same-name .srt/.vtt/.txt captions) "
                               "or a JSONL manifest; a folder holding manifest.jsonl is read through it."),
    out: Path = typer.Option(..., "--out", help="Folder for the shards, dataset.json and report.jsonl."),
    fps: float = typer.Option(10.0, help="Frame rate of the stored frames."),
    size: int = typer.Option(128, help="Shorter side of the stored frames, in pixels."),
    sample_rate: int = typer.Option(16000, help="Sample rate of the stored mono audio."),
    videos_per_shard: int = typer.Option(32, min=1, help="Videos per shard file."),
    split: str = typer.Option(None, help="Put every video in this split (train, val or test)."),
    workers: int = typer.Option(0, min=0, help="Decoding processes (0: one per core, up to 8)."),
) -> None:
    """Decode videos into SequenceExample shards (resumable: rerun to finish an interrupted run)."""
    from mmv_tf.data.ingest import REPORT_NAME, ingest
    from mmv_tf.data.sources import DecodeSettings

    summary = ingest(src, out, DecodeSettings(fps, size, sample_rate), videos_per_shard, split,
                     workers or None)
    typer.echo(f"{summary['videos']} videos in {len(summary['shards'])} shards under {out}; "
               f"{summary['skipped']} skipped (reasons and repairs in {out / REPORT_NAME})")


@command(data_app, "pack")
def data_pack(
    shards: Path = typer.Argument(..., help="Shard folder from `mmv-tf data ingest`."),
    out: Path = typer.Option(..., "--out", help="Pack folder to write (.npy arrays and pack.json)."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                help="The training config the pack is for (its model's tokenizer)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field, as in `train`."),
) -> None:
    """Decode and tokenise shards into plain arrays for `train --device-resident` (JAX, no TensorFlow)."""
    from mmv_tf.training.config import load_train_config
    from mmv_tf.training.pack import pack_shards

    packed = pack_shards(shards, load_train_config(config, overrides), out)
    typer.echo(f"packed {packed['splits']} videos of {shards} into {out}")


@command(data_app, "stats")
def data_stats(
    shards: Path = typer.Argument(..., help="Folder of shards made by `mmv-tf data ingest`."),
    as_json: bool = json_option(),
) -> None:
    """Videos, hours, with / without audio and text per split, and a few decoded captions."""
    from mmv_tf.data.stats import shard_stats

    stats = shard_stats(shards)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{shards} ({stats['shards']} shards)")
    columns = ("videos", "hours", "with_audio", "without_audio", "with_text", "without_text", "captions")
    table.add_column("split")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for split, row in stats["splits"].items():
        table.add_row(split, *(str(row[c]) for c in columns))
    console = Console()
    console.print(table)
    for sample in stats["sample_captions"]:
        console.print(f"  {sample['video']}: {sample['caption']}")


@command()
def train(
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                help="YAML training config (see configs/); defaults apply without one."),
    data: Path = typer.Option(..., "--data", help="Shard folder from `mmv-tf data ingest` (with "
                              "--device-resident: a pack from `mmv-tf data pack`)."),
    out: Path = typer.Option(..., "--out", help="Run folder: config, checkpoints, metrics, TensorBoard."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the run in --out from its last checkpoint."),
    overrides: list[str] = typer.Option([], "--set",
                                        help="Override a config field, e.g. --set train.steps=1000."),
    init: Path = typer.Option(None, "--init",
                              help="Start from this exported or imported model's network and weights "
                                   "(fine-tuning); its architecture replaces the config's preset."),
    device_resident: bool = typer.Option(
        False, "--device-resident", help="Hold the --data pack in accelerator memory and sample each "
        "batch there (KERAS_BACKEND=jax; config field data.device_resident)."),
) -> None:
    """Train an MMV model with NCE (video-audio) and MIL-NCE (video-text) on shards or a pack."""
    from mmv_tf.training.config import load_train_config
    from mmv_tf.training.run import train as run_training

    if init is not None:
        overrides = [*overrides, f"init={json.dumps(str(init.resolve()))}"]
    if device_resident:
        overrides = [*overrides, "data.device_resident=true"]
    result = run_training(load_train_config(config, overrides), data, out, resume=resume)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
    typer.echo(f"trained to step {result['step']} in {out}: {shown}")


import_app = group("import", "Import networks trained elsewhere as mmv-tf models.")


@command(import_app, "deepmind")
def import_deepmind(
    checkpoint: Path = typer.Argument(..., help="A released MMV checkpoint (mmv_s3d.pkl, "
                                      "mmv_tsm_resnet_x1.pkl or mmv_tsm_resnet_x2.pkl; CC BY-NC 4.0)."),
    out: Path = typer.Option(..., "--out", help="SavedModel folder to write, e.g. savedmodels/mmv_s3d."),
    vocabulary: Path = typer.Option(None, "--vocabulary",
                                    help="Words of the text table, one per line in row order (65536 "
                                         "lines); without it the model has no text signature."),
    backbone: str = typer.Option("auto", "--backbone",
                                 help="auto (from the checkpoint's names), s3dg, tsm_resnet50 or "
                                      "tsm_resnet50x2."),
    frames: int = typer.Option(32, "--frames", min=2, help="Frames per clip of the video signature."),
    mel_bins: int = typer.Option(80, "--mel-bins", min=1,
                                 help="Mel bins of the audio front end and spectrogram signature."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Import one of DeepMind's released MMV checkpoints, read without running code, exactly."""
    from mmv_tf.deepmind.importer import NO_VOCABULARY, import_released

    report = import_released(checkpoint, out, vocabulary=vocabulary, backbone=backbone,
                             num_frames=frames, num_mel_bins=mel_bins, overwrite=overwrite)
    typer.echo(f"imported {report['backbone']} from {checkpoint}: {report['params_used']} parameters and "
               f"{report['state_used']} BN statistics into {out}")
    for leaf in report["dropped"]:
        _note(f"dropped {leaf} (a head only the release's training used)")
    if not report["text"]:
        _note(f"no text signature: {NO_VOCABULARY}")


@command(name="export")
def export_command(
    run_dir: Path = typer.Argument(..., help="Training run folder (from `mmv-tf train`)."),
    out: Path = typer.Option(..., "--out", help="SavedModel folder to write, e.g. savedmodels/NAME."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Export a run's latest checkpoint as a SavedModel with video, audio and text signatures."""
    from mmv_tf.export import export_run

    path = export_run(run_dir, out, overwrite=overwrite)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    typer.echo(f"exported {run_dir} to {path} ({size:.1f} MiB)")


@command()
def embed(
    src: Path = typer.Argument(..., help="Media folder, manifest.jsonl, or shard folder."),
    model: Path = MODEL,
    out: Path = typer.Option(..., "--out", help="Embeddings folder to write (Parquet tables)."),
    split: str = typer.Option(None, "--split", help="Only this split (train, val or test)."),
    stride: float = typer.Option(None, "--stride", min=0.1,
                                 help="Seconds between window starts (default: half a window)."),
    runner: str = typer.Option("local", "--runner",
                               help="local (this process) or beam (an Apache Beam pipeline; needs "
                                    "the beam extra of mmv-tf)."),
    beam_options: str = typer.Option(None, "--beam-options",
                                     help="Beam pipeline options for --runner beam, e.g. "
                                          "'--runner=FlinkRunner --flink_master=HOST:8081' (default: "
                                          "the DirectRunner)."),
) -> None:
    """Embed every video (per window, with times, and averaged), its audio and its captions.

    Resumable: run it again after an interruption to finish (with either runner)."""
    from mmv_tf.embed import INFO_FILE, EmbedSettings, embed_corpus, runner_flags
    from mmv_tf.saved_model import ExportedModel

    flags = runner_flags(runner, beam_options)
    info = embed_corpus(src, ExportedModel(model), out, EmbedSettings(window_stride=stride, split=split),
                        beam_options=flags)
    counts, skipped = info["counts"], len(info["skipped"])
    typer.echo(f"{counts['videos']} videos, {counts['windows']} windows, {counts['captions']} captions "
               f"embedded into {out}; {skipped} skipped"
               + (f" (named in {out / INFO_FILE})" if skipped else ""))


@command(name="index")
def index_command(
    embeddings: Path = typer.Argument(..., help="Embeddings folder from `mmv-tf embed`."),
    out: Path = typer.Option(..., "--out", help="Index folder to write."),
    kind: str = typer.Option("auto", "--kind",
                             help="exact, approximate (faiss IVF-Flat), on-disk (IVF-Flat whose "
                                  "lists stay on disk, for galleries bigger than memory) or auto "
                                  "(approximate from 10,000 vectors, see "
                                  "benchmarks/index_choice.py)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Build search indexes over the embedded windows and captions, one per space and modality."""
    from mmv_tf.index import build_index

    info = build_index(embeddings, out, kind, overwrite=overwrite)
    shown = ", ".join(f"{name} ({g['rows']} rows, {g['kind']})" for name, g in info["galleries"].items())
    typer.echo(f"indexed into {out}: {shown}")


@command(name="search")
def search_command(
    index: Path = typer.Option(..., "--index", help="Index folder from `mmv-tf index`."),
    model: Path = MODEL,
    text: str = typer.Option(None, "--text", help="Query text."),
    audio: Path = typer.Option(None, "--audio", help="Query audio file (any format FFmpeg reads)."),
    video: Path = typer.Option(None, "--video", help="Query video file."),
    target: str = typer.Option("video", "--target", help="What to find: video, audio or text."),
    k: int = typer.Option(10, "--k", min=1, help="Number of results."),
    as_json: bool = json_option(),
) -> None:
    """Rank the index's clips against a text, audio or video query, in the pair's shared space."""
    from mmv_tf.index import SearchIndex
    from mmv_tf.saved_model import ExportedModel
    from mmv_tf.search import find

    modality, space, hits = find(ExportedModel(model), SearchIndex(index), target, k,
                                 text=text, audio=audio, video=video)
    if as_json:
        typer.echo(json.dumps({"query": {"modality": modality, "target": target, "space": space},
                               "results": [{"rank": h.rank, "score": round(h.score, 4), **h.item}
                                           for h in hits]}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{modality} -> {target} in {space}")
    for column in ("rank", "score", "video", "time", "caption"):
        table.add_column(column)
    for hit in hits:
        item = hit.item
        table.add_row(str(hit.rank), f"{hit.score:.3f}", item["video_id"],
                      f"{item['start']:.1f}-{item['end']:.1f}s",
                      item.get("caption") or item.get("text") or "")
    Console().print(table)


evaluate_app = group("evaluate", "Evaluate a model by the paper's protocols on labelled or captioned data: "
                                 "metrics.json, report.md and plots in --out.")
EVAL_OUT = typer.Option(..., "--out", help="Folder for metrics.json, report.md, plots and the feature cache "
                                           "(a rerun into it with other classifier settings reuses the "
                                           "features).")
LABELLED = typer.Argument(..., help="A folder with one sub-folder per class (and optional train.txt / "
                                    "test.txt split files), or a JSONL manifest of {path, label|labels, "
                                    "split|fold}.")
TRAIN_LIST = typer.Option(None, "--train-list", help="Split file of the training examples (default: "
                                                     "train.txt in the data folder, if present).")
TEST_LIST = typer.Option(None, "--test-list", help="Split file of the test examples (default: test.txt).")
C_OPTION = typer.Option(0.001, "--c", min=1e-9, help="C of the LinearSVC on standardised features.")
HELD_OUT = typer.Option(0.25, "--held-out", min=0.01, max=0.9,
                        help="Share of each class tested, for data without a split or folds.")
SEED = typer.Option(0, "--seed", help="Seed of the augmentation and the held-out split.")


def _print_metrics(result: dict, names: tuple[str, ...], as_json: bool) -> None:
    """The figures `names` of an evaluation (with chance where known), or all of it as JSON."""
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    chance = result.get("chance", {})
    for name in names:
        if name in result:
            extra = f"   (chance {chance[name]:.3f})" if name in chance else ""
            typer.echo(f"  {name:16s} {result[name]:8.3f}{extra}")


def _linear_protocol(**settings):
    from mmv_tf.evaluation.classification import Protocol

    return Protocol(**settings)


@command(evaluate_app, "video-classification")
def evaluate_videos(
    data: Path = LABELLED,
    model: Path = MODEL,
    out: Path = EVAL_OUT,
    frames: int = typer.Option(32, "--frames", min=1, help="Frames per clip."),
    stride: int = typer.Option(2, "--stride", min=1,
                               help="Every stride-th frame, at the model's frame rate."),
    crop: int = typer.Option(224, "--crop", min=16, help="Shorter side, then a crop square of this side."),
    passes: int = typer.Option(10, "--passes", min=1, help="Random clips of each training video."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Mirror training clips half the time (the "
                                                             "protocol's; not where left and right are "
                                                             "classes)."),
    test_windows: int = typer.Option(10, "--test-windows", min=1,
                                     help="Linearly spaced windows of each test video."),
    c: float = C_OPTION,
    held_out: float = HELD_OUT,
    seed: int = SEED,
    train_list: Path = TRAIN_LIST,
    test_list: Path = TEST_LIST,
    as_json: bool = json_option("a summary"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Linear classification of videos on the frozen representation (the released UCF101 protocol by
    default): top-1 and top-5."""
    from mmv_tf.evaluation.classification import evaluate_videos as run

    result = run(model, data, out, _linear_protocol(frames=frames, stride=stride, crop=crop, passes=passes,
                                                    flip=flip, test_windows=test_windows, c=c,
                                                    held_out=held_out, seed=seed),
                 train_list, test_list, overwrite, _note)
    _print_metrics(result, ("top1", "top5"), as_json)


@command(evaluate_app, "audio-classification")
def evaluate_sounds(
    data: Path = LABELLED,
    model: Path = MODEL,
    out: Path = EVAL_OUT,
    windows: int = typer.Option(10, "--windows", min=1, help="Linearly spaced windows of each sound."),
    c: float = C_OPTION,
    held_out: float = HELD_OUT,
    seed: int = SEED,
    train_list: Path = TRAIN_LIST,
    test_list: Path = TEST_LIST,
    as_json: bool = json_option("a summary"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Linear classification of sounds on the audio representation (ESC-50 style; k-fold when the
    manifest gives folds): top-1 and top-5."""
    from mmv_tf.evaluation.classification import evaluate_sounds as run

    result = run(model, data, out, _linear_protocol(test_windows=windows, c=c, held_out=held_out, seed=seed),
                 train_list, test_list, overwrite, _note)
    _print_metrics(result, ("top1", "top5"), as_json)


@command(evaluate_app, "image-classification")
def evaluate_images(
    data: Path = LABELLED,
    model: Path = MODEL,
    out: Path = EVAL_OUT,
    template: str = typer.Option("{}", "--template", help="Zero-shot text for a class name, e.g. 'a {}'."),
    c: float = C_OPTION,
    held_out: float = HELD_OUT,
    seed: int = SEED,
    train_list: Path = TRAIN_LIST,
    test_list: Path = TEST_LIST,
    as_json: bool = json_option("a summary"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Linear probe and zero-shot classification of images (image models, or video models on still
    images): top-1, or mAP for multi-label data."""
    from mmv_tf.evaluation.classification import evaluate_images as run

    result = run(model, data, out, _linear_protocol(c=c, held_out=held_out, seed=seed), template,
                 train_list, test_list, overwrite, _note)
    _print_metrics(result, ("top1", "top5", "mAP", "zero_shot_top1", "zero_shot_mAP"), as_json)


@command(evaluate_app, "retrieval")
def evaluate_retrieval(
    manifest: Path = typer.Argument(..., help="JSONL manifest of {video, text, start?, end?, label?, split?} "
                                              "(or its folder), e.g. from `mmv-tf data captions`."),
    model: Path = MODEL,
    out: Path = EVAL_OUT,
    split: str = typer.Option("test", "--split", help="Records of this split (records without one always "
                                                      "count); 'all' for every record."),
    clips: str = typer.Option("caption", "--clips", help="caption (the window centred on the caption's "
                                                         "times) or whole (whole videos)."),
    windows: int = typer.Option(4, "--windows", min=1, help="Windows averaged over a whole video."),
    as_json: bool = json_option("a summary"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Zero-shot text -> video and video -> text retrieval: R@1/5/10, median rank (MSRVTT style)."""
    from mmv_tf.evaluation.retrieval import evaluate_retrieval as run

    result = run(model, manifest, out, None if split == "all" else split, clips, windows, overwrite, _note)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"{result['captions']} captions, {result['clips']} clips, in {result['space']}:")
    for direction in ("text_to_video", "video_to_text"):
        typer.echo(f" {direction.replace('_', ' ')}")
        _print_metrics(result[direction], ("R@1", "R@5", "R@10", "median_rank", "label_R_precision",
                                           "label_precision@10"), False)


DEFAULT_WORKSPACE = Path("data") / "demo-app"


PROBE_OPTION = typer.Option(None, "--probe", help="Linear probe from `mmv-tf classify fit` on the image "
                                                   "model: the app classifies pictures with it too.")


def _serve(model: Path, index: Path, host: str, port: int, image_model: Path | None = None,
           probe: Path | None = None) -> None:
    from mmv_tf.app.search_app import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"note: serving on {host}: other machines on that network can reach the app",
                    err=True, fg=typer.colors.YELLOW)
    typer.echo(f"starting the search app on http://{host}:{port} (Ctrl+C stops it)")
    serve(model, index, host, port, image_model_path=image_model, probe_path=probe)


@command(name="app")
def app_command(
    model: Path = MODEL,
    index: Path = typer.Option(DEFAULT_WORKSPACE / "index", "--index",
                               help="Index folder from `mmv-tf index` (default: the one `mmv-tf demo` "
                                    "makes)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (this machine only by "
                                                         "default)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on."),
    image_model: Path = typer.Option(None, "--image-model",
                                     help="Deflated image model of --model (`mmv-tf deflate`): adds "
                                          "image queries and image classification."),
    probe: Path = PROBE_OPTION,
) -> None:
    """Start the Gradio search app over an index: query by text, sound, video or image, and
    classify pictures."""
    _serve(model, index, host, port, image_model, probe)


@command()
def demo(
    workspace: Path = typer.Option(DEFAULT_WORKSPACE, "--dir",
                                   help="Workspace for the corpus, embeddings and index."),
    model: Path = MODEL,
    videos: int = typer.Option(1000, "--videos", min=20, help="Videos in the demo corpus, if made."),
    split: str = typer.Option("test", "--split",
                              help="Split to search: test (unseen in training), val, train or all."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on."),
    deflation: str = typer.Option("bn", "--deflation",
                                  help="How the image model for pictures is made from the model: bn, "
                                       "naive (see `mmv-tf deflate`) or none (no pictures)."),
    probe: Path = PROBE_OPTION,
    prepare_only: bool = typer.Option(False, "--prepare-only",
                                      help="Make the corpus, embeddings, index and image model, then stop."),
) -> None:
    """The demo: generate the demo corpus (first time only), embed and index it with the model,
    deflate the model into an image model, then start the search app. A second start reuses what
    exists."""
    from mmv_tf.app.workspace import prepare_demo

    if deflation not in ("bn", "naive", "none"):
        raise typer.BadParameter(f"--deflation must be bn, naive or none; got {deflation!r}")
    mode = None if deflation == "none" else deflation
    space = prepare_demo(workspace, model, videos, split=None if split == "all" else split,
                         deflation=mode, say=typer.echo)
    if not prepare_only:
        _serve(model, space.index, host, port, space.image_model if mode else None, probe)


@command()
def deflate(
    model: Path = typer.Option(DEFAULT_MODEL, "--model", help="Exported video model folder."),
    out: Path = typer.Option(..., "--out", help="Image model folder to write."),
    images: Path = typer.Option(DEFAULT_WORKSPACE / "corpus", "--images",
                                help="Unlabelled images: a folder of images, or a video corpus whose "
                                     "train frames are sampled (default: the demo corpus)."),
    mode: str = typer.Option("bn", "--mode", help="naive (3D kernels summed over time) or bn (then "
                                                   "BN gamma/beta tuned to match the video net)."),
    frames: int = typer.Option(2000, "--frames", min=10, help="Frames sampled from a video corpus."),
    epochs: int = typer.Option(4, "--epochs", min=1, help="Passes over the images (mode bn)."),
    tsm_shift: str = typer.Option("remove", "--tsm-shift",
                                  help="TSM only: remove the shift, or alpha (scale shifted channels)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
) -> None:
    """Turn a video model into an image model in the same spaces (signatures image and text)."""
    from mmv_tf.deflation import DeflationSettings, deflate_model

    report = deflate_model(model, out, images, DeflationSettings(mode=mode, tsm_shift=tsm_shift,
                                                                 epochs=epochs),
                           frames, overwrite, note=_note)
    gap = f"L1 gap to the video net on {report['images']['held_out']} held-out images: " \
          f"naive {report['l1_naive']:.4f}"
    if "l1_tuned" in report:
        gap += f", BN-tuned {report['l1_tuned']:.4f}"
    typer.echo(f"{gap}\nwrote {mode} deflation of {model} to {out}")


classify_app = group("classify", "Classify images with a model: linear probe and zero-shot.")


@command(classify_app, "fit")
def classify_fit(
    images: Path = typer.Argument(..., help="Labelled images: one sub-folder of images per class."),
    model: Path = typer.Option(DEFAULT_MODEL, "--model",
                               help="Image model from `mmv-tf deflate`, or a video model (images "
                                    "become static videos)."),
    out: Path = typer.Option(None, "--out", help="Folder to save the fitted linear probe in."),
    held_out: float = typer.Option(0.25, "--held-out", min=0.01, max=0.9,
                                   help="Share of each class kept out of fitting, to test on."),
    template: str = typer.Option("{}", "--template",
                                 help="Zero-shot text for a class name, e.g. 'a {}'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the classifier."),
    as_json: bool = json_option("a summary"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Fit a linear probe on the model's features and test it, with zero-shot by class names."""
    from mmv_tf.classify import fit_classifier

    summary = fit_classifier(images, model, out, held_out, seed, template, overwrite, note=_note)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    typer.echo(f"{len(summary['classes'])} classes, {summary['images']['fit']} images fitted, "
               f"{summary['images']['held_out']} held out:\n"
               f"  linear probe accuracy {summary['linear_probe_accuracy']:.3f}\n"
               f"  zero-shot accuracy    {summary['zero_shot_accuracy']:.3f} "
               f"(in {summary['zero_shot_space']})\n  chance                {summary['chance']:.3f}")


@command(classify_app, "predict")
def classify_predict(
    files: list[Path] = typer.Argument(..., help="Images to classify."),
    probe: Path = typer.Option(..., "--probe", help="Folder from `mmv-tf classify fit --out`."),
) -> None:
    """Predict the class of each image with a saved linear probe."""
    from mmv_tf.classify import predict_files

    for path, label in predict_files(files, probe, note=_note):
        typer.echo(f"{path}\t{label}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
