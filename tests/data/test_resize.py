import numpy as np

from lungforge.augment.plan import SourceMaps
from lungforge.bench.protocol.slices import read_resized
from lungforge.core.labels import NODULE
from lungforge.data.dataset import SliceDataset
from lungforge.data.resize import resize_images_uint8, resize_label_maps
from lungforge.store import open_store


def _centroid(weights: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(weights.shape)
    total = weights.sum()
    return np.array([(rows * weights).sum() / total, (cols * weights).sum() / total])


def test_label_resize_stays_on_the_image_resize():
    # A nodule square at source rows/cols 31..45; shrinking 3x must keep the label where the image is.
    label = np.zeros((1, 96, 96), np.uint8)
    label[0, 31:46, 31:46] = NODULE
    image = np.where(label == NODULE, 255, 0).astype(np.uint8)
    small_image = resize_images_uint8(image, 32)[0].astype(np.float64)
    small_label = resize_label_maps(label, 32)[0] == NODULE
    shift = _centroid(small_label.astype(np.float64)) - _centroid(small_image)
    assert np.abs(shift).max() < 0.5  # torch "nearest" is 2/3 of a pixel off here


def test_bench_training_and_augment_resize_labels_identically(tmp_path, store_builder):
    store = open_store(store_builder(tmp_path / "real.zarr", "real", n_series=4, per_series=2, size=64))
    size = 48
    rows = np.arange(len(store))
    reference = resize_label_maps(np.asarray(store.label[...]), size)
    _, bench_labels = read_resized(store, rows, size)
    np.testing.assert_array_equal(bench_labels, reference)
    dataset = SliceDataset(store, size=size)
    for i in range(len(dataset)):
        item = dataset[i]
        np.testing.assert_array_equal(item["label"].numpy(), reference[item["index"]])
    maps = SourceMaps(store, size)
    assert len(maps) > 0
    for i in range(len(maps)):
        np.testing.assert_array_equal(maps[i], reference[maps.indices[i]])
