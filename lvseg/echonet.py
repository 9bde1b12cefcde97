"""The EchoNet-Dynamic folder, read exactly as the reference code (echonet/dynamic) reads it.

Folder layout::

    ROOT/FileList.csv         one row per video (FileName, EF, ESV, EDV, ..., Split)
    ROOT/VolumeTracings.csv   FileName,X1,Y1,X2,Y2,Frame: long axis then ~20 chords per frame
    ROOT/Videos/<name>.avi    112x112 MJPG

Where the reference is brittle we are forgiving (FileName with or without ``.avi``, split in any
case) and where it fails silently we fail loudly, naming the file and the row or video.
Coordinates in tracings are pixels, (X, Y) = (column, row).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.draw

from lvseg.video import read_video

FILELIST = "FileList.csv"
TRACINGS = "VolumeTracings.csv"
VIDEOS = "Videos"
SPLITS = ("train", "val", "test", "all")
PHASES = ("ES", "ED")
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
FILELIST_REQUIRED = ("FileName", "Split")
FILELIST_FLOATS = ("EF", "ESV", "EDV")
MISSING_LISTED = 5  # how many missing names an error message lists before "..."


class DataFormatError(ValueError):
    """A file of the data set breaks the EchoNet-Dynamic format; the message names file and row."""


@dataclass(frozen=True)
class Sample:
    """One traced frame. ``image`` is uint8 (H, W, 3) RGB, ``mask`` bool (H, W), True = LV."""

    video: str
    phase: str
    frame: int
    image: np.ndarray
    mask: np.ndarray
    ef: float


@dataclass(frozen=True)
class TracedVideo:
    """A video's two traced frames: ``es`` and ``ed`` are float (N, 4) X1,Y1,X2,Y2 rows."""

    video: str
    split: str
    ef: float
    esv: float
    edv: float
    es_frame: int
    ed_frame: int
    es: np.ndarray
    ed: np.ndarray

    def tracing(self, phase: str) -> tuple[int, np.ndarray]:
        return (self.es_frame, self.es) if phase == "ES" else (self.ed_frame, self.ed)


def strip_avi(name: str) -> str:
    return name[:-4] if name.lower().endswith(".avi") else name


def normalise_split(split: str) -> str:
    if split.lower() not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (any case), got {split!r}")
    return split.lower()


def trace_mask(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise one frame's tracing as the reference does. Returns bool (height, width).

    ``rows`` is float (N, 4) of X1, Y1, X2, Y2: the long axis first, then the chords. The polygon
    runs down the X1/Y1 ends of the chords and back up the X2/Y2 ends; vertices are rounded half
    to even (numpy.rint) before filling, and the fill is clipped to the frame.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 4 or len(rows) < 3:
        raise ValueError(f"a tracing needs (N>=3, 4) rows (long axis + chords), got {rows.shape}")
    chords = rows[1:]
    x = np.concatenate((chords[:, 0], chords[::-1, 2]))
    y = np.concatenate((chords[:, 1], chords[::-1, 3]))
    r, c = skimage.draw.polygon(np.rint(y).astype(int), np.rint(x).astype(int), (height, width))
    mask = np.zeros((height, width), dtype=bool)
    mask[r, c] = True
    return mask


def read_filelist(root: Path) -> pd.DataFrame:
    """FileList.csv with FileName stripped of ``.avi``, Split lower case, EF/ESV/EDV as floats."""
    path = root / FILELIST
    table = _read_csv(path)
    missing = [c for c in FILELIST_REQUIRED if c not in table.columns]
    if missing:
        raise DataFormatError(
            f"{path}: header lacks column(s) {', '.join(missing)}; found {', '.join(table.columns)}"
        )
    table["FileName"] = table["FileName"].str.strip().map(strip_avi)
    table["Split"] = table["Split"].str.strip().str.lower()
    for column in FILELIST_FLOATS:
        table[column] = _numeric(table, column, path, allow_blank=True) if column in table else np.nan
    duplicated = table["FileName"][table["FileName"].duplicated()]
    if len(duplicated):
        row = duplicated.index[0] + 2
        raise DataFormatError(f"{path}: row {row}: video {duplicated.iloc[0]} is listed twice")
    return table


def read_tracings(root: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """VolumeTracings.csv grouped by (video, frame) in order of first appearance.

    Returns {video: [(frame, float (N, 4) rows in file order), ...]}; video names without .avi.
    """
    path = root / TRACINGS
    table = _read_csv(path)
    if list(table.columns) != TRACING_COLUMNS:
        raise DataFormatError(
            f"{path}: header must be exactly {','.join(TRACING_COLUMNS)}; "
            f"found {','.join(map(str, table.columns))}"
        )
    coords = np.stack([_numeric(table, c, path) for c in TRACING_COLUMNS[1:5]], axis=1)
    frames = _numeric(table, "Frame", path)
    fractional = np.flatnonzero(frames != np.floor(frames))
    if len(fractional):
        raise DataFormatError(f"{path}: row {fractional[0] + 2}: Frame must be a whole number")
    keys = pd.DataFrame({"video": table["FileName"].str.strip().map(strip_avi), "frame": frames})
    grouped: dict[str, list[tuple[int, np.ndarray]]] = {}
    for (video, frame), index in keys.groupby(["video", "frame"], sort=False).indices.items():
        grouped.setdefault(video, []).append((int(frame), coords[np.sort(index)]))
    return grouped


def traced_videos(root: str | Path, split: str = "all") -> tuple[list[TracedVideo], dict[str, str]]:
    """The FileList rows of ``split`` that have both an ES and an ED tracing.

    Returns (kept videos in FileList order, {excluded video: reason}). ES is the first traced frame
    listed for a video, ED the last, as in the reference; frames in between are ignored.
    """
    root = Path(root)
    split = normalise_split(split)
    filelist = read_filelist(root)
    if split != "all":
        filelist = filelist[filelist["Split"] == split]
    tracings = read_tracings(root)
    kept: list[TracedVideo] = []
    excluded: dict[str, str] = {}
    for row in filelist.itertuples(index=False):
        frames = tracings.get(row.FileName, [])
        if len(frames) < 2:
            excluded[row.FileName] = f"{len(frames)} traced frame(s) in {TRACINGS}, 2 needed"
            continue
        (es_frame, es), (ed_frame, ed) = frames[0], frames[-1]
        kept.append(TracedVideo(row.FileName, row.Split, float(row.EF), float(row.ESV),
                                float(row.EDV), es_frame, ed_frame, es, ed))
    return kept, excluded


def find_missing_videos(root: Path, videos: list[TracedVideo]) -> list[str]:
    present = {p.name for p in (root / VIDEOS).glob("*")} if (root / VIDEOS).is_dir() else set()
    return [v.video for v in videos if f"{v.video}.avi" not in present]


def missing_videos_message(root: Path, missing: list[str]) -> str:
    listed = ", ".join(missing[:MISSING_LISTED]) + (", ..." if len(missing) > MISSING_LISTED else "")
    return (
        f"{len(missing)} video(s) listed in {root / FILELIST} are missing from "
        f"{root / VIDEOS}: {listed} (pass allow_missing=True / --allow-missing to skip them)"
    )


def select_present(
    root: Path, videos: list[TracedVideo], excluded: dict[str, str], allow_missing: bool
) -> list[TracedVideo]:
    """Drop videos whose AVI is absent: an error listing them, or (allow_missing) reported."""
    missing = find_missing_videos(root, videos)
    if missing and not allow_missing:
        raise FileNotFoundError(missing_videos_message(root, missing))
    for name in missing:
        excluded[name] = f"video file {VIDEOS}/{name}.avi is missing"
    gone = set(missing)
    return [v for v in videos if v.video not in gone]


@dataclass
class EchoNet:
    """The traced ES/ED frames of one split, decoded per sample exactly as the reference does.

    Two samples per kept video (ES then ED). Decoding a whole AVI per sample is slow by design:
    this class is the reference; recipes read the frame store (lvseg.framestore) instead.
    """

    root: str | Path
    split: str = "train"
    allow_missing: bool = False
    videos: list[TracedVideo] = field(init=False)
    excluded: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        videos, self.excluded = traced_videos(self.root, self.split)
        self.videos = select_present(self.root, videos, self.excluded, self.allow_missing)

    def __len__(self) -> int:
        return 2 * len(self.videos)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        video = self.videos[index % len(self) // 2]
        phase = PHASES[index % 2]
        frame, rows = video.tracing(phase)
        path = self.root / VIDEOS / f"{video.video}.avi"
        frames = read_video(path)
        if frame >= len(frames):
            raise DataFormatError(
                f"{self.root / TRACINGS}: video {video.video} {phase} frame {frame} is past the "
                f"end of {path} ({len(frames)} frames)"
            )
        image = frames[frame]
        mask = trace_mask(rows, *image.shape[:2])
        return Sample(video.video, phase, frame, image, mask, video.ef)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (an EchoNet-Dynamic folder needs it)")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path}: not a readable CSV ({error})") from error


def _numeric(table: pd.DataFrame, column: str, path: Path, allow_blank: bool = False) -> np.ndarray:
    """``column`` as float64; a non-number (or a blank, unless allowed: NaN) names its row."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if allow_blank:
        bad &= (text != "").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: row {row + 2}, column {column}: {table[column].iloc[row]!r} is not a number"
        )
    return values
