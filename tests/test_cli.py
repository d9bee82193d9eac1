"""The `mmv-tf` command line: every command's help, and what `presets` prints."""

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from mmv_tf.cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one line per option in rich's help boxes, so texts are not wrapped


def commands(group=None, path=()):
    """(path, click command) of every leaf command, sub-commands of groups included."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


def flat(text: str) -> str:
    """Text without rich's box characters, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─┃━┏┓┗┛┡┩╇┳┻]", " ", text).split())


COMMANDS = dict(commands())


def test_the_command_tree_holds_every_documented_command():
    assert {" ".join(path) for path in COMMANDS} >= {
        "presets", "train", "export", "embed", "index", "search", "app", "demo", "deflate",
        "data demo", "data digits", "data clips", "data captions", "data sounds", "data ingest",
        "data stats", "import deepmind", "classify fit", "classify predict", "evaluate retrieval",
        "evaluate video-classification", "evaluate audio-classification", "evaluate image-classification"}
    top = runner.invoke(app, ["--help"], env=WIDE)
    assert top.exit_code == 0, top.output
    for path, command in COMMANDS.items():  # each listed with the first line of its help
        assert path[0] in top.output
        assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_help_shows_its_text_and_every_option_with_its_help(path):
    command = COMMANDS[path]
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    assert f"Usage: mmv-tf {' '.join(path)}" in shown
    assert flat(command.help.split("\n\n")[0]) in shown  # the summary paragraph, word for word
    for param in command.params:
        name = param.opts[0] if param.param_type_name == "option" else param.name
        assert name in shown, f"{' '.join(path)}: {name} missing from its help"
        assert param.help and param.help.strip(), f"{' '.join(path)} {name} has no help text"
        # Word for word: rich markup (e.g. "[default: ...]" inside the text) must not eat any of it.
        assert flat(param.help) in shown, f"{' '.join(path)} {name}: help shown as {shown!r}"


def test_unknown_commands_and_options_are_refused_with_a_message():
    result = runner.invoke(app, ["serch"])
    assert result.exit_code == 2 and "No such command 'serch'" in flat(result.output)
    result = runner.invoke(app, ["presets", "--jsn"])
    assert result.exit_code == 2 and "No such option: --jsn" in flat(result.output)


def test_presets_json_lists_paper_and_tiny_presets_with_their_sizes():
    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"s3dg", "tsm_resnet50", "tsm_resnet50x2", "s3dg_tiny", "tsm_resnet50_tiny"} <= set(rows)
    for name, video_dim in (("s3dg", 1024), ("tsm_resnet50", 2048), ("tsm_resnet50x2", 4096)):
        dims = rows[name]["output_dims"]
        assert dims["video"] == {"before_head": video_dim, "va": 512, "vat": 256}
        assert dims["audio"] == {"before_head": 2048, "va": 512, "vat": 256}
        assert dims["text"] == {"before_head": 2048, "va": 512, "vat": 256}  # released text -> va head
        assert rows[name]["input"]["frames"] == 32
    assert rows["s3dg"]["trainable_parameters"]["video"] < rows["tsm_resnet50"][
        "trainable_parameters"]["video"] < rows["tsm_resnet50x2"]["trainable_parameters"]["video"]
    assert rows["s3dg_tiny"]["input"] == {"frames": 16, "image_size": 64, "fps": 10.0,
                                          "sample_rate": 16000, "max_words": 16}
    # The table prints the same numbers: parameters in millions, sizes, clip and spaces.
    table = runner.invoke(app, ["presets"], env=WIDE)
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in (flat(x) for x in table.output.splitlines()) if line}
    for name, row in rows.items():
        params = "/".join(f"{row['trainable_parameters'][m] / 1e6:.2f}" for m in ("video", "audio",
                                                                                   "text", "head"))
        dims = "/".join(str(row["output_dims"][m]["before_head"]) for m in ("video", "audio", "text"))
        clip = f"{row['input']['frames']}x{row['input']['image_size']}px"
        vat = row["output_dims"]["video"]["vat"]
        assert all(part in lines[name] for part in (params, dims, clip, f"vat={vat}")), lines[name]
