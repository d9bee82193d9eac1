"""The `mmv-tf` command line."""

import json

from mmv_tf.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


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


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "presets" in result.output
    assert "Print JSON" in runner.invoke(app, ["presets", "--help"]).output

