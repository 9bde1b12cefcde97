"""Everything about a search that can be known before anything starts.

The name is free, the tracking store answers, the data folder and its frame store open, every
cache the space can ask for is built, Ray is up and some node can hold a trial. A failure here
leaves no MLflow run and no search folder behind (`lvsearch run` exits 2), so the same command can
simply be run again; caches already built are kept.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvseg.config import parse_config
from lvseg.framecache import FrameCache
from lvseg.framestore import FrameStore, default_cache_dir, load_store
from lvseg.recipes import get_recipe
from search import localray, studies, tracking
from search.errors import NotStarted
from search.space import SearchSpace
from search.state import default_storage

CONNECT_TIMEOUT_S = 5.0


class ResourceError(ValueError):
    """No node of the cluster can hold one trial, and nothing can add one."""


class DiskSpaceError(OSError):
    """The caches a search needs would not fit on the disk of the cache folder."""


@dataclass(frozen=True)
class Prepared:
    """A search ready to start: its inputs checked, its caches warm, Ray up."""

    space: SearchSpace
    name: str
    root: str
    uri: str
    storage: Path
    cache_dir: str
    samples: int
    allow_missing: bool
    data_hash: str
    skipped: dict[str, str] = field(default_factory=dict)  # video -> why it is not in the store
    caveats: tuple[str, ...] = ()  # what makes this search's numbers not a result
    optuna_storage: str | None = None


def prepare(space: SearchSpace, data: str | None = None, name: str | None = None, samples: int | None = None,
            tracking_uri: str | None = None, storage: Path | None = None, address: str | None = None,
            cache_dir: Path | None = None, allow_missing: bool = False, verbose: bool = False,
            optuna_storage: str | None = None) -> Prepared:
    """Check everything, in order of cost. Expected problems raise their own error types (bad
    input: ValueError, FileNotFoundError, ConnectionError, ...); anything else is wrapped in
    NotStarted, so that the caller knows nothing started either way."""
    try:
        return _prepare(space, data, name, samples, tracking_uri, storage, address, cache_dir, allow_missing, verbose,
                        optuna_storage)
    except (ValueError, OSError, LookupError):
        raise
    except Exception as error:
        raise NotStarted(tracking.first_line(error)) from error


def _prepare(space: SearchSpace, data: str | None, name: str | None, samples: int | None, tracking_uri: str | None,
             storage: Path | None, address: str | None, cache_dir: Path | None, allow_missing: bool,
             verbose: bool, optuna_storage: str | None) -> Prepared:
    storage = (storage or default_storage()).resolve()
    name = name or f"{Path(space.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (storage / name).exists():
        raise FileExistsError(f"a search named {name!r} exists under {storage}: `lvsearch resume {name}` "
                              f"continues it; pick another --name for a new one")
    root = data or space.data
    if root is None:
        raise ValueError(f"{space.source}: no data folder: pass --data ROOT or set `data:` in the space")
    uri = tracking_uri or tracking.default_tracking_uri()
    tracking.experiment_id(tracking.open_store(uri, create=True), uri)
    optuna_storage = optuna_storage or studies.default_storage(uri)
    studies.check_free(optuna_storage, name)
    cache = str(Path(cache_dir or default_cache_dir()).resolve())
    store = load_store(root, cache, allow_missing)
    warm_caches(space, store)
    init_ray(address, verbose=verbose)
    check_resources(space, local=address is None)
    return Prepared(space, name, str(Path(root).resolve()), uri, storage, cache, _samples(space, samples),
                    allow_missing, store.hash, store.excluded, caveats(space, store), optuna_storage)


def _samples(space: SearchSpace, samples: int | None) -> int:
    samples = samples or space.search["samples"]
    if space.search["sampler"] == "grid" and samples > space.grid_size:
        print(f"grid sampler: {space.grid_size} grid points, so {space.grid_size} trials instead of {samples}")
        return space.grid_size
    return samples


def cache_configs(space: SearchSpace) -> list[Any] | None:
    """One config per combination of the values the space can give the keys that decide its
    recipe's caches (the fixed value, every choice, or the default), or None when one of those keys
    is searched over a range (then each node builds what its trials ask for, under a lock)."""
    recipe = get_recipe(space.recipe)
    params = {p.name: p for p in space.params}
    values: list[list[Any]] = []
    for key in recipe.cache_keys:
        if key in space.fixed:
            values.append([space.fixed[key]])
        elif key not in params:
            values.append([getattr(parse_config({"recipe": space.recipe}), key)])
        elif params[key].type == "choice":
            values.append(list(params[key].values))
        else:
            return None
    base = {"recipe": space.recipe, **space.fixed}
    return [parse_config({**base, **dict(zip(recipe.cache_keys, combo, strict=True))})
            for combo in itertools.product(*values)]


def caveats(space: SearchSpace, store: FrameStore) -> tuple[str, ...]:
    """The recipe's caveats over the configs the space can draw (its cache configs, else the base)."""
    recipe = get_recipe(space.recipe)
    configs = cache_configs(space) or [parse_config({"recipe": space.recipe, **space.fixed})]
    return tuple(dict.fromkeys(note for config in configs for note in recipe.caveats(config, store)))


def warm_caches(space: SearchSpace, store: FrameStore) -> None:
    """Build every frame cache the space can ask for, once, here, with progress bars, before any
    trial starts; refuse (before building any) caches that would not fit in the cache folder."""
    configs = cache_configs(space) or []
    recipe = get_recipe(space.recipe)
    caches = {cache.path: cache for config in configs for cache in recipe.caches(config, store)}
    cold = [cache for cache in caches.values() if not cache.built]
    check_disk(cold, store.path.parent)
    for cache in cold:
        cache.load()


def check_disk(caches: list[FrameCache], folder: Path) -> None:
    """Refuse caches whose bytes exceed the free space of ``folder``, saying how much they need."""
    need = sum(cache.nbytes for cache in caches)
    free = shutil.disk_usage(folder).free
    if need > free:
        listed = "; ".join(f"{cache.label}: {size_text(cache.nbytes)}" for cache in caches)
        raise DiskSpaceError(f"the caches this search needs take {size_text(need)} but {folder} has "
                             f"{size_text(free)} free ({listed}); free space or pass --cache-dir elsewhere")


def size_text(nbytes: int) -> str:
    """Bytes for people: GB from 1 GB up, else MB."""
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def init_ray(address: str | None, temp_dir: str | None = None, verbose: bool = True) -> None:
    """Join ``address``, or start a local Ray (:func:`search.localray.start_local`), unless one
    started in the background for this command: then wait for it, and take its error as ours."""
    import ray

    localray.wait_for_background()
    if ray.is_initialized():
        return
    if address:
        _probe_cluster(address)
        ray.init(address=address, **({"logging_level": "WARNING"} | localray.quiet(verbose)))
        return
    localray.start_local(temp_dir, verbose)


def _probe_cluster(address: str) -> None:
    """A HOST:PORT that does not answer fails here in seconds (``ray.init`` retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and friends: Ray finds (or refuses) the cluster itself, quickly
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(f"no Ray cluster answers at {address}: {error}") from None


def check_resources(space: SearchSpace, local: bool) -> None:
    """Some live node must hold one trial's CPUs and GPUs; otherwise Tune would wait forever
    ("No available node types can fulfill..."). On a cluster whose autoscaler can add nodes, a
    request no node fits yet is allowed, with a notice."""
    import ray

    need = {"CPU": float(space.resources["cpu"]), "GPU": float(space.resources["gpu"])}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    largest = ", ".join(f"{k.lower()} {max((n.get(k, 0.0) for n in nodes), default=0):g}" for k in need)
    asked = f"cpu {need['CPU']:g}, gpu {need['GPU']:g}"
    if not local and _autoscaler_running():
        print(f"notice: no node can hold a trial ({asked}) yet; waiting for the autoscaler to add one")
        return
    raise ResourceError(f"{space.source}: resources: a trial asks for {asked}, but the largest of the "
                        f"{len(nodes)} Ray node(s) has {largest} and no autoscaler can add one")


def _autoscaler_running() -> bool:
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    try:
        return internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) is not None
    except Exception:  # an older or newer Ray without that key: assume none rather than hang
        return False
