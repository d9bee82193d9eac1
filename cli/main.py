"""`mmv-tf`: train, export and search multimodal versatile networks.

Heavy imports (TensorFlow, Keras) happen inside commands, so `--help` is fast.
"""

import json

import typer

app = typer.Typer(
    name="mmv-tf",
    help="Multimodal Versatile networks in Keras 3 / TensorFlow: video, audio and text "
    "in shared embedding spaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Multimodal Versatile networks: video, audio and text in shared embedding spaces."""


@app.command()
def presets(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
