"""Pathfinder generator: primitives against the original's rules, files in the release layout, determinism."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from s5lra.data import DataError
from s5lra.data import pathfinder_gen
from s5lra.data import pathfinder_sprites as ps
from s5lra.data.pathfinder_gen import (CHUNK, add_distractors, generate_chunk, generate_pathfinder, lra_params,
                                       render, sample_target_pairs)


# ---------------------------------------------------------------------------------------------- primitives


def test_disk_struct():
    assert ps.disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert ps.disk(2).sum() == 13 and ps.disk(3).sum() == 29


def test_translate_rounds_up():
    assert [int(v) for v in ps.translate(0, 0, np.arctan2(1, 3), 1)] == [1, 1]   # 0.32, 0.95 -> 1, 1
    assert [int(v) for v in ps.translate(0, 0, -np.pi / 2, 2)] == [-2, 1]        # cos(-pi/2) = +6e-17 -> 1
    assert [int(v) for v in ps.translate(5, 5, -np.pi, 2)] == [5, 3]             # sin(-pi) = -1e-16 -> 5
    assert ps.flip_by_pi(np.array([0.0, -0.5, 1.0])).tolist() == [-np.pi, np.pi - 0.5, 1.0 - np.pi]


def _original_candidates(pivot, radius, size):
    """The original's procedure: float points on the circle, truncate, drop out-of-image, unique rows."""
    ang = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
    y, x = pivot[0] + radius * np.sin(ang), pivot[1] + radius * np.cos(ang)
    pts = np.stack([y, x], 1).astype(int)
    pts = pts[~((y >= size) | (y < 0) | (x >= size) | (x < 0))]
    return np.unique(pts, axis=0) if len(pts) else pts


@pytest.mark.parametrize("radius", [3, 6, 7, 8])
def test_candidate_set_matches_original_everywhere(radius):
    offs, theta = ps.candidate_offsets(radius)
    np.testing.assert_allclose(theta, np.arctan2(offs[:, 0], offs[:, 1]))
    size = 32
    for py in range(-radius - 2, size + radius + 2):
        for px in (-3, 0, 1, 13, size - 2, size + 2):
            pts = offs + (py, px)
            keep = (pts >= 0).all(1) & (pts < size).all(1)
            np.testing.assert_array_equal(pts[keep], _original_candidates((py, px), radius, size).reshape(-1, 2))


def test_angle_weights():
    w = ps.angle_weights(np.array([0.0, np.pi / 4, np.pi / 2, np.pi]), 0.0, 1.0)
    np.testing.assert_allclose(w, [1.0, 0.5, 0.0, 0.0], atol=1e-12)
    # wrapped turn: from -pi+0.1 to pi-0.1 is a 0.2 rad turn; continuity 1.8 caps at 50 degrees
    np.testing.assert_allclose(ps.angle_weights(np.pi - 0.1, -np.pi + 0.1, 1.8), np.cos(0.36) ** 2)
    assert ps.angle_weights(np.deg2rad(50.0), 0.0, 1.8) < 1e-30


def test_thresholds_are_the_float64_rules():
    f = np.arange(256) / 255.0
    for k1 in (0, 100, 204, 208, 255):
        bad = f[k1] + f >= 1.8
        assert np.array_equal(bad, np.arange(256) >= ps.SUM_THRESHOLD[k1])
    assert ps.SUM_THRESHOLD[255] == 204 and ps.SUM_THRESHOLD[0] == 256
    assert np.array_equal(np.ceil(f - 0.3) > 0, np.arange(256) > ps.SEED_BLOCK_LEVEL)


def test_bytescale_like_old_scipy():
    assert ps.bytescale(np.array([[0.0, 0.5, 2.0]])).tolist() == [[0, 64, 255]]
    assert ps.bytescale(np.zeros((2, 2))).tolist() == [[0, 0], [0, 0]]


def test_sprites_and_seed_struct():
    g = lra_params(32).geometry(1)
    line, mask = g.sprites
    assert line.shape[1:] == (2 * g.radius + 1,) * 2 == (9, 9)
    assert mask[:, g.radius, g.radius].min() >= 200          # the paddle starts at the sprite centre
    assert (mask[line > 50] >= line[line > 50]).all()        # the mask is the dilated line (up to ringing)
    struct = g.seed_struct(0)                                # theta = 0 points along +x, from (1, 1)
    assert len(struct) and (struct[:, 1] >= 1).all()
    marker = ps.render_marker((32, 32), (10, 20), 1.5, 2)
    assert marker.max() == 255 and marker[10, 20] > 200 and marker[20, 10] == 0


def _cv2_float_dilate(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Independent model of cv2.dilate on a float64 image with the default border: dst(p) = max over
    in-image p + k, and -DBL_MAX where no p + k is inside the image."""
    n = img.shape[0]
    out = np.full(img.shape, -np.finfo(np.float64).max)
    for ky, kx in offsets:
        src = img[max(ky, 0):n + min(ky, 0), max(kx, 0):n + min(kx, 0)]
        dst = out[max(-ky, 0):n + min(-ky, 0), max(-kx, 0):n + min(-kx, 0)]
        np.maximum(dst, src, out=dst)
    return out


@pytest.mark.parametrize("resolution,margin,n_ok", [(32, 1, 30), (128, 2, 354), (128, 3, 360)])
def test_seeding_fails_where_cv2_border_poisons_the_mask(resolution, margin, n_ok):
    """The original's find_available_coordinates returns nothing when the thresholded dilated mask has a
    negative pixel, which cv2's -DBL_MAX float64 border produces wherever the struct footprint is wholly
    outside the image. At 32 px that kills 330 of 360 seed orientations (the cause of the reference's
    ~330 attempts per pair and ~1 distractor per image)."""
    g = lra_params(resolution).geometry(margin)
    assert g.seed_degree_ok.sum() == n_ok
    band = np.zeros((g.size, g.size))
    band[0], band[-1], band[:, 0], band[:, -1] = 1, 1, 1, 1
    for deg in range(-180, 180, 7 if resolution == 32 else 37):
        poisoned = (np.ceil(_cv2_float_dilate(band, g.seed_struct(deg)) - 0.3) < 0).any()
        assert poisoned == (not g.seed_degree_ok[deg + 180])
    flat, starts = g.target_seed_tails
    assert all(starts[d + 1] == starts[d] for d in np.flatnonzero(~g.seed_degree_ok))
    if resolution == 32:
        assert not g.seed_degree_ok[180]          # theta = 0: struct offsets (1, 1..3), last row poisoned


def test_seeds_use_only_working_orientations():
    p = lra_params(32)
    g = p.geometry(1)
    rng = np.random.default_rng(1)
    state, ids, *_ = sample_target_pairs(g, p.contour_length, 2048, rng)
    # seed sprite id = deg + 180; only snake 1 is seeded through the dilated mask (snake 2 is placed at
    # seed_distance from it and only bounds-checked), so only snake 1 avoids the failing orientations
    assert len(state) and g.seed_degree_ok[ids[:, 0, 0]].all()
    firsts = [add_distractors(g, p, s, rng)[::p.distractor_length] for s in state[:10]]
    assert all(g.seed_degree_ok[sid] for f in firsts for sid, _, _ in f)


def test_incremental_dilated_mask_is_exact():
    p = lra_params(32)
    g = p.geometry(1)
    state, *_ = sample_target_pairs(g, p.contour_length, 256, np.random.default_rng(0))
    w = g.width
    for lane in state[:3]:
        m = lane[0].reshape(w, w)
        inner = (slice(g.pad, g.pad + g.size),) * 2
        np.testing.assert_array_equal(lane[1].reshape(w, w)[inner], ps.grey_dilate(m[inner], g.margin))
        assert not m[:g.pad].any() and not m[:, :g.pad].any()   # nothing leaks into the zero border


def test_render_marks_at_255():
    p = lra_params(32)
    g = p.geometry(1)
    img = render(g, p, [(180, 16, 16, p.snake_contrast * p.paddle_contrast)], [(8, 8), (24, 24)])
    assert img[8, 8] == img[24, 24] == 255 and 0 < img[14:19, 15:20].max() < 255


# ---------------------------------------------------------------------------------------------- files


def _digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_release_layout_and_round_trip(tmp_path):
    folder = generate_pathfinder(tmp_path, n=7, batch_size=4, seed=3, workers=1, progress=False)
    assert folder == tmp_path / "pathfinder32" / "curv_contour_length_14"
    assert sorted(p.name for p in (folder / "metadata").iterdir()) == ["0.npy", "1.npy"]
    assert not list(folder.rglob("*.tmp"))
    rows = [row for b in (0, 1) for row in np.load(folder / "metadata" / f"{b}.npy", allow_pickle=False)]
    assert len(rows) == 7 and all(len(r) == 11 for r in rows)
    assert " ".join(rows[5]) in {f"imgs/1 sample_1.png 1 {lab} 1.0 14 4 2 0.5 1 1" for lab in (0, 1)}
    for row in rows:
        img = Image.open(folder / row[0] / row[1])
        assert img.mode == "L" and img.size == (32, 32)
        assert np.asarray(img).max() > 0
    assert (folder / "metadata" / "0.npy").read_bytes().startswith(b"\x93NUMPY")


def test_deterministic_and_independent_of_workers(tmp_path):
    a = generate_pathfinder(tmp_path / "a", n=CHUNK + 5, batch_size=10, seed=1, workers=1, progress=False)
    b = generate_pathfinder(tmp_path / "b", n=CHUNK + 5, batch_size=10, seed=1, workers=2, progress=False)
    c = generate_pathfinder(tmp_path / "c", n=CHUNK + 5, batch_size=10, seed=2, workers=1, progress=False)
    assert _digest(a) == _digest(b) != _digest(c)


def test_interrupted_run_is_invisible_and_resumes(tmp_path, monkeypatch):
    reference = generate_pathfinder(tmp_path / "ref", n=6, batch_size=3, workers=1, progress=False)
    write_metadata = pathfinder_gen._write_metadata

    def interrupted_after_batch_0(folder, p, batch, batch_size, rows):
        if batch == 1:
            raise KeyboardInterrupt
        write_metadata(folder, p, batch, batch_size, rows)

    monkeypatch.setattr(pathfinder_gen, "_write_metadata", interrupted_after_batch_0)
    with pytest.raises(KeyboardInterrupt):
        generate_pathfinder(tmp_path / "run", n=6, batch_size=3, workers=1, progress=False)
    final = tmp_path / "run" / "pathfinder32" / "curv_contour_length_14"
    staged = final.with_name(".curv_contour_length_14.partial")
    assert not final.exists()  # nothing a reader could take for a (smaller) dataset
    assert sorted(p.name for p in (staged / "metadata").iterdir()) == ["0.npy"]
    monkeypatch.setattr(pathfinder_gen, "_write_metadata", write_metadata)
    assert generate_pathfinder(tmp_path / "run", n=6, batch_size=3, workers=1, progress=False) == final
    assert _digest(final) == _digest(reference) and not staged.exists()


def test_existing_folder_kept_for_same_settings_refused_for_others(tmp_path):
    folder = generate_pathfinder(tmp_path, n=3, batch_size=3, workers=1, progress=False)
    before = _digest(folder)
    assert generate_pathfinder(tmp_path, n=3, batch_size=3, workers=1, progress=False) == folder
    with pytest.raises(DataError, match="--overwrite"):
        generate_pathfinder(tmp_path, n=4, batch_size=3, workers=1, progress=False)
    assert _digest(folder) == before
    generate_pathfinder(tmp_path, n=4, batch_size=3, workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in (folder / "metadata").iterdir()) == ["0.npy", "1.npy"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging or old copy left


def test_other_resolutions_and_difficulties(tmp_path):
    folder = generate_pathfinder(tmp_path, resolution=64, difficulty="easy", n=2, workers=1, progress=False)
    assert folder.name == "curv_baseline"
    assert np.asarray(Image.open(folder / "imgs" / "0" / "sample_0.png")).shape == (64, 64)
    row = np.load(folder / "metadata" / "0.npy")[0]
    assert " ".join(row[4:]) == "1.8 6 2 5 1 1 1"
    assert lra_params(128, "intermediate").n_distractors == 11 and lra_params(256).n_distractors == 7
    with pytest.raises(ValueError):
        lra_params(48)


# ---------------------------------------------------------------------------------------------- statistics


def test_labels_balanced_and_pixel_statistics_32():
    out = generate_chunk(lra_params(32), np.random.default_rng(7), 300)
    labels = np.array([o[1] for o in out])
    assert abs(labels.sum() - 150) < 35                     # 4 sigma of Binomial(300, 0.5)
    imgs = np.stack([o[0] for o in out]).astype(float)
    assert 18.5 < imgs.mean() < 22.0                          # reference 20.1/255
    assert 0.31 < (imgs > 0).mean() < 0.37                    # reference 34%
    assert 0.07 < (imgs >= 128).mean() < 0.10                 # reference 8%
    assert (imgs.max(axis=(1, 2)) == 255).all()               # markers at 255


@pytest.mark.slow
def test_pixel_statistics_128_match_reference():
    out = generate_chunk(lra_params(128), np.random.default_rng(0), 40)
    imgs = np.stack([o[0] for o in out]).astype(float)
    assert 7.0 < imgs.mean() < 9.0                            # reference 7.9/255
    assert 0.12 < (imgs > 0).mean() < 0.16                    # reference 14%
    assert 0.02 < (imgs >= 128).mean() < 0.04                 # reference 3%
