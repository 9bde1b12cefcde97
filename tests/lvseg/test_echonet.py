from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.draw

from lvseg.echonet import DataFormatError, EchoNet, read_tracings, trace_mask, traced_videos
from lvseg.video import VideoDecodeError

# ---- trace_mask -------------------------------------------------------------------------------


def test_trace_mask_fills_the_polygon_of_the_chords(square_tracing) -> None:
    mask = trace_mask(square_tracing(4, 5, 12, 20), height=32, width=32)
    expected = np.zeros((32, 32), bool)
    r, c = skimage.draw.polygon([5, 5, 20, 20], [4, 12, 12, 4], (32, 32))
    expected[r, c] = True
    np.testing.assert_array_equal(mask, expected)


def test_trace_mask_drops_the_long_axis_row(square_tracing) -> None:
    rows = square_tracing(4, 5, 12, 20)
    rows[0] = [0, 0, 31, 31]  # a long axis far outside the chords must not change the polygon
    np.testing.assert_array_equal(trace_mask(rows, 32, 32), trace_mask(square_tracing(4, 5, 12, 20), 32, 32))


def test_trace_mask_walks_x2_in_reverse() -> None:
    # chords whose X2 ends, if walked forward, would cross the polygon into a bow tie
    rows = np.array([[8, 2, 8, 14], [2, 2, 14, 2], [2, 14, 14, 14]], dtype=float)
    mask = trace_mask(rows, 16, 16)
    assert mask[8, 8] and mask[3, 3] and mask[12, 12] and mask[3, 12] and mask[12, 3]


def test_trace_mask_rounds_half_to_even_before_filling() -> None:
    # x = 2.5 rounds to 2 (numpy.rint), not 3 (round half up): column 2 is inside
    rows = np.array([[5, 1, 5, 9], [2.5, 1, 7.5, 1], [2.5, 9, 7.5, 9]], dtype=float)
    mask = trace_mask(rows, 12, 12)
    assert mask[5, 2] and mask[5, 8]  # 7.5 rounds to 8
    assert not mask[5, 1] and not mask[5, 9]


def test_trace_mask_clips_to_the_frame(square_tracing) -> None:
    mask = trace_mask(square_tracing(-10, -10, 5, 40), height=16, width=16)
    assert mask.shape == (16, 16)
    assert mask[:, :6].all() and not mask[:, 6:].any()


def test_trace_mask_rejects_too_few_rows() -> None:
    with pytest.raises(ValueError, match="N>=3"):
        trace_mask(np.zeros((2, 4)), 8, 8)


# ---- folder reading ---------------------------------------------------------------------------


def test_rows_group_by_video_and_frame_in_order_of_first_appearance(make_folder, square_tracing) -> None:
    a1, a2, b = square_tracing(2, 2, 20, 25), square_tracing(3, 3, 10, 12), square_tracing(4, 4, 9, 9)
    root = make_folder(
        {"A": (30, "TRAIN"), "B": (30, "TRAIN")},
        [("A", 20, a1[:3]), ("B", 1, b), ("A", 5, a2), ("A", 20, a1[3:]), ("B", 7, b)],
    )
    tracings = read_tracings(root)
    assert [frame for frame, _ in tracings["A"]] == [20, 5]
    np.testing.assert_array_equal(tracings["A"][0][1], a1)  # non-contiguous rows, file order kept
    videos, _ = traced_videos(root, "all")
    a = next(v for v in videos if v.video == "A")
    assert (a.es_frame, a.ed_frame) == (20, 5)  # ES = first listed, even when later in time


def test_es_is_first_and_ed_last_listed_ignoring_frames_between(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (30, "VAL")}, [("A", 9, t), ("A", 3, t), ("A", 14, t)])
    (video,), _ = traced_videos(root, "val")
    assert (video.es_frame, video.ed_frame) == (9, 14)


def test_videos_with_fewer_than_two_traced_frames_are_excluded_and_reported(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (30, "TRAIN"), "B": (30, "TRAIN"), "C": (30, "TRAIN")},
                       [("A", 1, t), ("A", 2, t), ("B", 4, t)])
    data = EchoNet(root, "train")
    assert [v.video for v in data.videos] == ["A"]
    assert set(data.excluded) == {"B", "C"}
    assert "1 traced frame" in data.excluded["B"] and "0 traced frame" in data.excluded["C"]


def test_filelist_names_with_or_without_avi(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (10, "TRAIN"), "B": (10, "TRAIN")},
                       [("A", 1, t), ("A", 2, t), ("B", 1, t), ("B", 2, t)],
                       filelist_names={"A": "A.avi"})
    assert [v.video for v in EchoNet(root, "train").videos] == ["A", "B"]


@pytest.mark.parametrize("split, expected", [("train", ["A"]), ("TRAIN", ["A"]), ("Val", ["B"]),
                                             ("test", ["C"]), ("all", ["A", "B", "C"]), ("ALL", ["A", "B", "C"])])
def test_split_selection_ignores_case(make_folder, square_tracing, split, expected) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (5, "TRAIN"), "B": (5, "val"), "C": (5, "Test")},
                       [(n, f, t) for n in "ABC" for f in (1, 2)])
    assert [v.video for v in EchoNet(root, split).videos] == expected


def test_unknown_split_is_rejected(make_folder, square_tracing) -> None:
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, square_tracing(2, 2, 9, 9))])
    with pytest.raises(ValueError, match="'validation'"):
        EchoNet(root, "validation")


def test_samples_match_the_video_and_tracing(make_folder, square_tracing) -> None:
    t_es, t_ed = square_tracing(4, 4, 12, 14), square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (12, "TRAIN")}, [("A", 7, t_es), ("A", 2, t_ed)])
    data = EchoNet(root)
    assert len(data) == 2
    es, ed = list(data)
    assert (es.phase, es.frame, ed.phase, ed.frame) == ("ES", 7, "ED", 2)
    assert es.image.dtype == np.uint8 and es.image.shape == (32, 32, 3)
    assert es.mask.dtype == bool and es.mask.sum() < ed.mask.sum()
    np.testing.assert_array_equal(es.mask, trace_mask(t_es, 32, 32))
    assert es.ef == 55.0 and es.video == "A"


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["FileList.csv", "VolumeTracings.csv"])
def test_missing_csv_names_the_file(make_folder, square_tracing, missing) -> None:
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, square_tracing(2, 2, 9, 9))])
    (root / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        EchoNet(root)


def test_wrong_tracings_header_names_the_file(make_folder, square_tracing) -> None:
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, square_tracing(2, 2, 9, 9))])
    path = root / "VolumeTracings.csv"
    path.write_text(path.read_text().replace("X1,Y1", "x1,y1", 1))
    with pytest.raises(DataFormatError, match="VolumeTracings.csv: header must be exactly"):
        EchoNet(root)


def test_filelist_without_split_column_names_it(make_folder, square_tracing) -> None:
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, square_tracing(2, 2, 9, 9))])
    path = root / "FileList.csv"
    path.write_text(path.read_text().replace("Split", "Fold"))
    with pytest.raises(DataFormatError, match="FileList.csv: header lacks column.*Split"):
        EchoNet(root)


def test_non_numeric_coordinate_names_row_and_column(make_folder, square_tracing) -> None:
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, square_tracing(2, 2, 9, 9))])
    path = root / "VolumeTracings.csv"
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[2] = "twelve"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"VolumeTracings.csv: row 4, column Y1: 'twelve'"):
        EchoNet(root)


def test_missing_videos_are_counted_and_listed(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({n: (5, "TRAIN") for n in "ABCDEFGH"}, [(n, f, t) for n in "ABCDEFGH" for f in (1, 2)])
    for name in "BCDEFGH":
        (root / "Videos" / f"{name}.avi").unlink()
    with pytest.raises(FileNotFoundError, match=r"7 video\(s\) .* B, C, D, E, F, \.\.\."):
        EchoNet(root)


def test_allow_missing_skips_and_reports(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (5, "TRAIN"), "B": (5, "TRAIN")}, [(n, f, t) for n in "AB" for f in (1, 2)])
    (root / "Videos" / "B.avi").unlink()
    data = EchoNet(root, allow_missing=True)
    assert [v.video for v in data.videos] == ["A"] and len(data) == 2
    assert "missing" in data.excluded["B"]


def test_corrupt_avi_names_the_file(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, t), ("A", 2, t)])
    (root / "Videos" / "A.avi").write_bytes(b"RIFF not really an avi" * 10)
    with pytest.raises(VideoDecodeError, match="A.avi"):
        EchoNet(root)[0]


def test_traced_frame_past_the_end_names_the_video(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, t), ("A", 40, t)])
    data = EchoNet(root)
    with pytest.raises(DataFormatError, match="video A ED frame 40 is past the end .*5 frames"):
        data[1]


def test_index_out_of_range_is_an_index_error_with_a_message(make_folder, square_tracing) -> None:
    t = square_tracing(2, 2, 20, 25)
    root = make_folder({"A": (5, "TRAIN")}, [("A", 1, t), ("A", 2, t)])
    with pytest.raises(IndexError, match="sample 2 out of range for 2"):
        EchoNet(root)[2]


def test_synthetic_folder_reads_two_samples_per_video(synthetic_root: Path) -> None:
    data = EchoNet(synthetic_root, "all")
    assert len(data) == 32 and not data.excluded
    sample = data[5]
    assert sample.image.shape == (112, 112, 3) and sample.mask.any()
