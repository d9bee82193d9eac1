"""`mmv-tf embed --runner beam`: the steps of `mmv_tf.embed` as an Apache Beam pipeline.

Each file of the source is decoded (`read_media_file`), each video cut into model inputs
(`video_inputs`), embedded by RunInference with `SavedModelHandler` and turned into rows
(`video_rows`); the rows, with the messages of the files that could not be decoded, are grouped by
part of the source and each part written whole (`write_part`) into `.parts/` of the output folder,
as the local runner writes them. This process then merges the parts into the same tables. So the
source, the model folder and the output folder must be the same paths on every worker (the output
writable): this machine's under the DirectRunner, a shared file system mounted alike on a cluster.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import logging
from pathlib import Path

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState, create_runner

from mmv_tf.data.sources import DecodeSettings
from mmv_tf.embed import (
    EmbedError,
    EmbedPlan,
    InputSpec,
    MediaFile,
    VideoInputs,
    embed_batches,
    model_decoding,
    read_media_file,
    video_inputs,
    video_rows,
    write_part,
)
from mmv_tf.saved_model import ExportedModel

_log = logging.getLogger(__name__)


class SavedModelHandler(ModelHandler[VideoInputs, PredictionResult, ExportedModel]):
    """RunInference's handler for an mmv-tf SavedModel folder: a worker loads it once with
    `tf.saved_model.load` (through `ExportedModel`: Keras 3 cannot load SavedModels), then embeds one
    video per call (`VideoInputs`) through its video, audio and text signatures, `batch_size` windows
    or captions at a time; the inference is `embed_batches`' `{"video": {"va": [W, D], ...}, ...}`."""

    def __init__(self, path: str | Path, batch_size: int):
        super().__init__(max_batch_size=1)  # a video is a batch of windows already
        self._path, self._batch_size = str(path), batch_size

    def load_model(self) -> ExportedModel:
        return ExportedModel(self._path, self._batch_size)

    def run_inference(self, batch, model: ExportedModel, inference_args=None) -> list[PredictionResult]:
        return [PredictionResult(inputs, embed_batches(model, inputs.batches)) for inputs in batch]

    def get_num_bytes(self, batch) -> int:
        return sum(values.nbytes for inputs in batch for values in inputs.batches.values())

    def get_metrics_namespace(self) -> str:
        return "mmv_tf_embed"


def beam_runner(flags: list[str]):
    """`embed_corpus`'s runner for Beam pipeline `flags` (e.g. ["--runner=FlinkRunner",
    "--flink_master=host:8081"]; none: the DirectRunner), checked now: an unknown option, a bad value
    or an unknown runner is an `EmbedError` naming it."""
    options = PipelineOptions(flags)
    parsers = []
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # argparse prints its usage before it exits
            known = options.get_all_options(add_extra_args_fn=parsers.append)
    except SystemExit:
        reason = said.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise EmbedError(f"--beam-options: {reason}") from None
    _, unknown = parsers[0].parse_known_args(flags)
    if unknown:
        close = difflib.get_close_matches(unknown[0].split("=")[0], [f"--{name}" for name in known], n=1)
        raise EmbedError(f"--beam-options: {unknown[0]!r} is not a Beam pipeline option"
                         + (f" (did you mean {close[0]}?)" if close else ""))
    name = options.view_as(StandardOptions).runner or "DirectRunner"
    try:
        runner = create_runner(name)
    except ValueError:
        raise EmbedError(f"--beam-options: unknown Beam runner {name!r}; use one of "
                         f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)} or the full name of a "
                         "PipelineRunner class") from None
    except (ImportError, AttributeError) as error:
        raise EmbedError(f"--beam-options: the Beam runner {name!r} cannot be loaded: {error}") from None
    return functools.partial(embed_with_beam, options=options, runner=runner)


def embed_with_beam(files: list[MediaFile], model: ExportedModel, plan: EmbedPlan, options: PipelineOptions,
                    runner) -> None:
    """Embed the videos of `files` whose parts are not done, as a Beam pipeline run by `runner`;
    returns once every part is written. A failed run is an `EmbedError` with the workers' error."""
    spec = InputSpec.of(model)
    handler = KeyedModelHandler(SavedModelHandler(model.path, model.batch_size))
    pipeline = beam.Pipeline(runner=runner, options=options)
    videos = (pipeline
              | "files" >> beam.Create(files)
              | "decode" >> beam.FlatMap(_decoded, model_decoding(model), plan))
    decoded, failed = videos | "failed?" >> beam.Partition(lambda item, _: int(isinstance(item[1], str)), 2)
    embedded = (decoded
                | "inputs" >> beam.MapTuple(
                    lambda index, clip: (index, video_inputs(spec, clip, plan.stride_frames)))
                | "embed" >> RunInference(handler)
                | "rows" >> beam.MapTuple(
                    lambda index, result: (index, video_rows(result.example, result.inference))))
    ((embedded, failed)
     | "videos" >> beam.Flatten()
     | "by part" >> beam.Map(lambda item: (plan.number(item[0]), item))
     | "parts" >> beam.GroupByKey()
     | "write" >> beam.MapTuple(lambda number, items: write_part(plan, number, items)))
    try:
        state = pipeline.run().wait_until_finish()
    except Exception as error:  # as the runner reports the workers' error
        state = " ".join(str(error).split())
    if state != PipelineState.DONE:
        raise EmbedError(f"the Beam pipeline did not finish ({state}); its finished parts are kept in "
                         f"{plan.parts}: run the command again to finish")


def _decoded(file: MediaFile, decoding: DecodeSettings, plan: EmbedPlan):
    """(position, `DecodedClip` or the message of a file that could not be decoded) of each video of
    `file` whose part is not done."""
    for index, video in read_media_file(file, decoding, skip=plan.done):
        if isinstance(video, str):
            _log.warning("skipped: %s", video)
        if video is not None:
            yield index, video
