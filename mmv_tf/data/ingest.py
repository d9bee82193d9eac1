"""`mmv-tf data ingest`: decode source videos in parallel into SequenceExample shards.

Sources are split into shards of `videos_per_shard` in a fixed order, so a
rerun after an interruption skips the shards already written and rebuilds only
the rest. Each shard is written to a hidden partial file and renamed when
complete; readers never see a half-written shard. Files that cannot be decoded
are skipped, and every skip or repair is logged in `report.jsonl`.

`dataset.json` says `complete: false` while shards are being written (and after
a run was stopped); readers refuse the folder until a rerun finishes it. The
report lines of each shard are saved (`.shard-reports/NAME.jsonl`) before the
shard is renamed into place, so a crash never loses them; `report.jsonl` and
the counts in `dataset.json` are assembled from them when the run completes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import os
from pathlib import Path

from mmv_tf.data.sources import DecodeSettings, Source, decode_source, list_sources
from mmv_tf.errors import InputError
from mmv_tf.files import atomic_path, claimed_folder, remove_path, write_text_atomically

REPORT_NAME = "report.jsonl"
DATASET_NAME = "dataset.json"
SHARD_REPORTS = ".shard-reports"  # NAME.jsonl: the report lines of shard NAME, until the run completes


class IngestError(InputError):
    """The output folder cannot be used (unwritable, or made with other settings)."""


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    name: str
    sources: tuple[Source, ...]


def plan_shards(sources: list[Source], videos_per_shard: int) -> list[ShardPlan]:
    """Consecutive groups of each split's sources: `train-00000.tfrecord`, ..."""
    plans = []
    for split in dict.fromkeys(s.split for s in sources):
        members = [s for s in sources if s.split == split]
        for index in range(0, len(members), videos_per_shard):
            plans.append(ShardPlan(f"{split}-{index // videos_per_shard:05d}.tfrecord",
                                   tuple(members[index:index + videos_per_shard])))
    return plans


def _prepare_out(out: Path, settings: dict) -> None:
    """Create `out`, or check that its existing shards were made with the same settings."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise IngestError(f"cannot write to {out}: {error}") from None
    dataset = out / DATASET_NAME
    if dataset.exists():
        try:
            previous = json.loads(dataset.read_text(encoding="utf-8"))["settings"]
        except (ValueError, KeyError, TypeError):
            raise IngestError(f"{dataset} is not an ingest summary; use another --out folder") from None
        if previous != settings:
            raise IngestError(f"{out} holds shards made with other settings ({previous}); "
                              f"use another --out folder")
    for stale in out.glob(".*.partial"):
        stale.unlink()


def _write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def _shard_report(out: Path, shard: str) -> Path:
    return out / SHARD_REPORTS / f"{shard}.jsonl"


def _assemble_report(out: Path, plans: list[ShardPlan]) -> list[str]:
    """The report lines of every planned shard, in shard order: from the shard's own report, or,
    for shards finished by an earlier completed run (whose shard reports are gone), from `report.jsonl`."""
    earlier: dict[str, list[str]] = {}
    if (out / REPORT_NAME).is_file():
        for line in (out / REPORT_NAME).read_text(encoding="utf-8").splitlines():
            try:
                earlier.setdefault(json.loads(line).get("shard"), []).append(line)
            except (ValueError, AttributeError):
                continue  # a torn line
    lines = []
    for plan in plans:
        own = _shard_report(out, plan.name)
        lines.extend(own.read_text(encoding="utf-8").splitlines() if own.is_file()
                     else earlier.get(plan.name, []))
    return lines


def ingest(src: str | Path, out: str | Path, settings: DecodeSettings | None = None,
           videos_per_shard: int = 32, split: str | None = None, workers: int | None = None,
           progress: bool = True) -> dict:
    """Ingest `src` (folder or manifest) into shards under `out`; returns the dataset summary.

    Raises `IngestError` when no video of `src` could be decoded (the reasons are in report.jsonl).
    """
    out = Path(out)
    settings = settings or DecodeSettings()
    sources = list_sources(src, split)
    with claimed_folder(out, "shards", inputs=[src]):
        return _ingest_into(out, src, sources, settings, videos_per_shard, workers, progress)


def _ingest_into(out: Path, src, sources: list, settings: DecodeSettings, videos_per_shard: int,
                 workers: int | None, progress: bool) -> dict:
    """`ingest`'s work once `out` is claimed: the pending shards, then the report and summary."""
    import tensorflow as tf
    from tqdm import tqdm

    from mmv_tf.data.shards import encode_video

    settings_record = {**dataclasses.asdict(settings), "videos_per_shard": videos_per_shard}
    _prepare_out(out, settings_record)
    plans = plan_shards(sources, videos_per_shard)
    pending = [plan for plan in plans if not (out / plan.name).exists()]
    if pending or not (out / DATASET_NAME).exists():
        _write_json(out / DATASET_NAME, {"settings": settings_record, "complete": False})
    todo = [source for plan in pending for source in plan.sources]
    if pending:
        (out / SHARD_REPORTS).mkdir(exist_ok=True)
        workers = workers or min(len(os.sched_getaffinity(0)), 8)
        bar = tqdm(total=len(sources), initial=len(sources) - len(todo), desc="ingest", unit="video",
                   disable=not progress)
        decode = functools.partial(decode_source, settings=settings)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(decode, todo, chunksize=1)
            for plan in pending:
                report = []
                with atomic_path(out / plan.name) as partial:
                    with tf.io.TFRecordWriter(str(partial)) as writer:
                        for source in plan.sources:
                            decoded = next(results)
                            bar.update()
                            entry = {"id": source.video_id, "source": str(source.path), "shard": plan.name}
                            if isinstance(decoded, str):  # the reason it could not be decoded
                                report.append({**entry, "status": "skipped", "reason": decoded})
                                continue
                            writer.write(encode_video(decoded))
                            if decoded.notes:
                                report.append({**entry, "status": "repaired", "notes": decoded.notes})
                    # Saved before the shard is renamed into place: a finished shard always has its report.
                    write_text_atomically(_shard_report(out, plan.name),
                                          "".join(json.dumps(line) + "\n" for line in report))
        bar.close()
    report_lines = _assemble_report(out, plans)
    write_text_atomically(out / REPORT_NAME, "".join(line + "\n" for line in report_lines))
    skipped = sum(json.loads(line)["status"] == "skipped" for line in report_lines)
    summary = {"settings": settings_record, "complete": True, "source": str(src),
               "shards": [plan.name for plan in plans], "videos": len(sources) - skipped,
               "skipped": skipped}
    _write_json(out / DATASET_NAME, summary)
    remove_path(out / SHARD_REPORTS)
    if summary["videos"] == 0:
        raise IngestError(f"no video of {src} could be decoded: all {skipped} were skipped (reasons in "
                          f"{out / REPORT_NAME}); nothing was ingested into {out}")
    return summary
