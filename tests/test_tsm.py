"""`mmv_tf.models.tsm`: the shift reads T from the clip it is given, and configs saved before TSM had
its own module still load."""

import keras
import numpy as np

import mmv_tf.models.presets  # noqa: F401  (registers the towers, as load_network does)
from mmv_tf.models.tsm import ClipMean, TemporalShift, TSMResNet, TSMResNetImage


def test_the_shift_and_the_clip_mean_take_t_from_the_clip():
    layer, mean = TemporalShift(), ClipMean()
    assert "num_frames" not in layer.get_config() and "num_frames" not in mean.get_config()
    rng = np.random.default_rng(0)
    for frames in (3, 5):
        clips = rng.normal(size=(2, frames, 1, 1, 16)).astype("float32")
        x = clips.reshape(2 * frames, 1, 1, 16)
        y = keras.ops.convert_to_numpy(layer(x, clips)).reshape(clips.shape)
        np.testing.assert_array_equal(y[:, 1:, ..., :2], clips[:, :-1, ..., :2])  # [0, n) from t-1
        np.testing.assert_array_equal(y[:, :-1, ..., 2:4], clips[:, 1:, ..., 2:4])  # [n, 2n) from t+1
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mean(x.reshape(2 * frames, 16), clips)),
                                   clips.reshape(2, frames, 16).mean(axis=1), rtol=1e-6)


def test_tower_configs_saved_under_resnet_v2_still_load():
    """Exported models before `tsm.py` name the module `mmv_tf.models.resnet_v2`; the registered
    name finds the class, and the config (the constructor's arguments) is unchanged."""
    for cls, config in ((TSMResNet, {"num_frames": 4, "width": 0.125, "shift_fraction": 0.125,
                                     "sync_bn": False, "shift_layout": "released"}),
                        (TSMResNetImage, {"width": 0.125, "shift_fraction": 0.125, "shift": "alpha",
                                          "alpha": 0.3, "sync_bn": False, "shift_layout": "mmv_tf"})):
        saved = {"module": "mmv_tf.models.resnet_v2", "class_name": cls.__name__,
                 "registered_name": f"mmv_tf>{cls.__name__}",
                 "config": {"name": "tower", "trainable": True, **config}}
        tower = keras.saving.deserialize_keras_object(saved)
        assert type(tower) is cls and tower.get_config() == saved["config"]
