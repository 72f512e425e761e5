"""Intensity preprocessing: N4 bias correction, offered as a measured option."""

import numpy as np

from disanatdetect.preprocess import n4_bias_field


def test_n4_removes_a_smooth_bias_from_piecewise_constant_tissue():
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (48, 56, 52)], indexing="ij")
    brain = (z ** 2 + y ** 2 + x ** 2) < 0.8
    tissue = np.where(np.sin(8 * x) > 0, 0.5, 1.0)
    image = np.where(brain, tissue * np.exp(0.3 * x + 0.2 * y * z), 0).astype(np.float32)
    field = n4_bias_field(image, brain)
    white = brain & (tissue == 1.0)

    def spread(values):
        return values.std() / values.mean()

    assert spread((image / field)[white]) < 0.2 * spread(image[white])
    assert (field[~brain] == 1).all()
