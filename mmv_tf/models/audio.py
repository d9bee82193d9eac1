"""Audio tower: raw waveform -> log-mel spectrogram (in the graph) -> 2D ResNet-50 V2."""

import keras
import numpy as np
from keras import layers, ops

from mmv_tf.models.backbone import Backbone
from mmv_tf.models.resnet_v2 import resnet_v2_trunk


def _hz_to_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(num_mel_bins: int, num_spectrogram_bins: int, sample_rate: float,
                   lower_hz: float, upper_hz: float) -> np.ndarray:
    """HTK-scale triangular filters, `[num_spectrogram_bins, num_mel_bins]` (DC bin zeroed)."""
    if not 0.0 <= lower_hz < upper_hz <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= lower_hz < upper_hz <= sample_rate/2, got {lower_hz}, {upper_hz}, {sample_rate}"
        )
    bin_mels = _hz_to_mel(np.linspace(0.0, sample_rate / 2, num_spectrogram_bins))[1:, None]
    edges = np.linspace(_hz_to_mel(lower_hz), _hz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels - lower) / (center - lower)
    falling = (upper - bin_mels) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


@keras.saving.register_keras_serializable(package="mmv_tf")
class LogMelSpectrogram(layers.Layer):
    """Waveform `[B, N]` in [-1, 1] -> `log(1 + 1e4 * mel)`, `[B, frames, num_mel_bins, 1]`.

    frames = (N - frame_length) // frame_step + 1; STFT magnitude with a Hann window,
    FFT size = frame_length.
    """

    def __init__(self, sample_rate: int = 48000, frame_length: int = 2048, frame_step: int = 1024,
                 num_mel_bins: int = 80, lower_hz: float = 80.0,
                 upper_hz: float = 7600.0, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.num_mel_bins = num_mel_bins
        self.lower_hz = lower_hz
        self.upper_hz = upper_hz
        self._filterbank = mel_filterbank(num_mel_bins, frame_length // 2 + 1, sample_rate,
                                          lower_hz, upper_hz)

    def call(self, waveform):
        real, imag = ops.stft(ops.cast(waveform, "float32"), self.frame_length, self.frame_step,
                              self.frame_length, window="hann", center=False)
        magnitude = ops.sqrt(real * real + imag * imag)
        mel = ops.matmul(magnitude, ops.convert_to_tensor(self._filterbank))
        return ops.expand_dims(ops.log(1.0 + 1e4 * mel), -1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else (samples - self.frame_length) // self.frame_step + 1
        return (input_shape[0], frames, self.num_mel_bins, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate, "frame_length": self.frame_length,
            "frame_step": self.frame_step,
            "num_mel_bins": self.num_mel_bins, "lower_hz": self.lower_hz, "upper_hz": self.upper_hz,
        }


@keras.saving.register_keras_serializable(package="mmv_tf")
class AudioResNet(Backbone):
    """Audio tower: waveform `[B, N]` in [-1, 1] -> `[B, 2048*width]`.

    The log-mel front end is part of the model, so exported models take waveforms.
    """

    def __init__(self, width: float = 1.0, sample_rate: int = 48000, frame_length: int = 2048,
                 frame_step: int = 1024, num_mel_bins: int = 80, lower_hz: float = 80.0,
                 upper_hz: float = 7600.0, sync_bn: bool = False, name: str = "audio_resnet",
                 **kwargs):
        waveform = keras.Input((None,), name="waveform")
        spectrogram = LogMelSpectrogram(
            sample_rate, frame_length, frame_step, num_mel_bins=num_mel_bins,
            lower_hz=lower_hz, upper_hz=upper_hz, name="log_mel",
        )(waveform)
        features = resnet_v2_trunk(spectrogram, width=width, sync_bn=sync_bn)
        super().__init__(
            waveform, features,
            config=dict(width=width, sample_rate=sample_rate, frame_length=frame_length,
                        frame_step=frame_step, num_mel_bins=num_mel_bins, lower_hz=lower_hz,
                        upper_hz=upper_hz, sync_bn=sync_bn),
            name=name, **kwargs,
        )

    @property
    def from_spectrogram(self) -> keras.Model:
        """The tower after its log-mel front end, sharing its layers: `[B, frames, num_mel_bins, 1]`
        -> `[B, 2048*width]` (what DeepMind's released audio network takes)."""
        if getattr(self, "_from_spectrogram", None) is None:
            self._from_spectrogram = keras.Model(self.get_layer("log_mel").output, self.output,
                                                 name=f"{self.name}_from_spectrogram")
        return self._from_spectrogram

    @property
    def min_samples(self) -> int:
        """Shortest waveform that yields one spectrogram frame."""
        return self.get_layer("log_mel").frame_length
