"""Base class of the towers: a functional Keras model rebuilt from its constructor arguments."""

import keras


class Backbone(keras.Model):
    """A functional model whose config is its constructor's keyword arguments.

    Subclasses build their graph in `__init__`, then call
    `super().__init__(inputs, outputs, config=..., name=...)`; `get_config`
    returns those arguments and `from_config` calls the constructor again, so
    a saved tower is rebuilt layer for layer before its weights load.
    """

    def __init__(self, inputs, outputs, config: dict, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._constructor_config = dict(config)

    @property
    def output_dim(self) -> int:
        """Size of the representation (`before_head`) this tower returns."""
        return int(self.output.shape[-1])

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, **self._constructor_config}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)
