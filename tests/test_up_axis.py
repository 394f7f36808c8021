"""Every dataset comes out y-up (the renderer's and the augmentation's up): class folders (ModelNet's layout,
z-up meshes) are turned by default, any reader can be told its source's up axis."""

import numpy as np
import pytest

from crossjepa.data import open_dataset


@pytest.fixture
def tall_along_z(tmp_path):
    """A class folder with one cloud per class: a thin column along z, and a flat slab in the xy plane."""
    rng = np.random.default_rng(0)
    column = rng.uniform(-1, 1, (500, 3)) * [0.1, 0.2, 1.0]
    slab = rng.uniform(-1, 1, (500, 3)) * [1.0, 0.6, 0.05]
    for name, cloud in (("column", column), ("slab", slab)):
        (tmp_path / name / "train").mkdir(parents=True)
        np.savetxt(tmp_path / name / "train" / f"{name}_0001.xyz", cloud)
    return tmp_path, column


def _extent(points) -> np.ndarray:
    p = np.asarray(points)
    return p.max(0) - p.min(0)


def test_class_folders_are_read_z_up_and_turned_y_up(tall_along_z):
    root, column = tall_along_z
    ds = open_dataset(root)
    assert ds.up_axis == "z"
    ext = _extent(ds[0]["points"])
    assert ext[1] == pytest.approx(ext.max()) and ext[1] > 3 * ext[0]
    # A rotation, not a reflection: (x, y, z) -> (x, z, -y), checked on the normalised cloud.
    as_stored = open_dataset(root, up_axis="y")[0]["points"].numpy()
    np.testing.assert_allclose(ds[0]["points"].numpy(), as_stored[:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)


def test_other_up_axes_and_bad_values(tall_along_z):
    root, _ = tall_along_z
    x_up = open_dataset(root, up_axis="x")[0]["points"].numpy()
    as_stored = open_dataset(root, up_axis="y")[0]["points"].numpy()
    np.testing.assert_allclose(x_up, np.stack([-as_stored[:, 1], as_stored[:, 0], as_stored[:, 2]], 1), atol=1e-6)
    with pytest.raises(ValueError, match="up_axis: expected one of x, y, z"):
        open_dataset(root, up_axis="up")
    with pytest.raises(ValueError, match="up_axis: expected one of None, y \\(synthetic shapes are generated y-up\\)"):
        open_dataset("synthetic:4", up_axis="z")


def test_the_up_axis_is_part_of_the_fingerprint(tall_along_z):
    root, _ = tall_along_z
    assert open_dataset(root).fingerprint() != open_dataset(root, up_axis="y").fingerprint()
    assert open_dataset(root).fingerprint() == open_dataset(root, up_axis="z").fingerprint()
