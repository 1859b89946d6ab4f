"""Surface metrics per image and class: normalised surface Dice and the percentile Hausdorff.

The numbers are MONAI's (read from MONAI 1.6.1, CPU, ``distance_metric="euclidean"``,
``use_subvoxels=False``, ``include_background=True``, ``directed=False``):
``monai.metrics.compute_surface_dice(y_pred, y, class_thresholds, spacing=...)`` and
``monai.metrics.compute_hausdorff_distance(y_pred, y, percentile=p, spacing=...)`` on the
one-hot forms ``(B, N, *spatial)`` of the two label maps.

MONAI's conventions, matched here
---------------------------------
Masks
    Class ``c`` of an image is the mask ``label == c``, in the truth and in the prediction.
Edges (``get_mask_edges``)
    ``mask ^ scipy.ndimage.binary_erosion(mask)``: the default structuring element (face
    connectivity: 4 neighbours in 2-D, 6 in 3-D) and border value 0, so a voxel of the
    mask is an edge voxel iff one of its face neighbours is outside the mask *or outside
    the image* (objects touching the image's side have edges there). MONAI crops to the
    bounding box of both masks with a margin of 1 first, which changes nothing but its
    coordinates' origin.
Distances (``get_surface_distance``)
    For every edge voxel of one mask, the Euclidean distance to the nearest edge voxel of
    the other, coordinates scaled by the spacing (MONAI: a SciPy KD-tree in float64 over
    the edge voxels, the result cast to **float32**). Both directions (``symmetric``).
Surface Dice
    ``(#{d_pred <= tau} + #{d_true <= tau}) / (#pred edges + #true edges)``, the
    comparison made in float32 (a float32 tensor against a Python float: ``tau`` is
    rounded to float32), the ratio stored in a float32 tensor.
Hausdorff distance, percentile ``p``
    Per direction ``torch.quantile(d, p / 100)`` of the float32 distances, all in
    float32: ``rank = float32(p / 100) * (n - 1)``, then torch's CPU ``lerp`` of the two
    order statistics around it, whose multiply-adds are fused (one rounding; see
    :func:`_quantile32`); then the larger of the two directions (NaN if either is).
    ``percentile=None``: the maximum distance. MONAI reads ``percentile=0`` (falsy) as
    the maximum too; here 0 is refused rather than silently read as 100.
Empty classes
    Class in neither mask: surface Dice NaN (0 / 0), Hausdorff NaN (quantile of no
    distance). Class in one mask only: MONAI's distances are inf in *both* directions,
    as many as that mask's edge voxels, so surface Dice 0 and Hausdorff NaN (the
    quantile of infs: ``inf + w * (inf - inf)``), or inf with ``percentile=None``.
Warnings (none here)
    MONAI warns for every class empty in the truth or the prediction; nothing is warned
    here (the NaN / 0 / inf values above say it).

What is returned, exactly: the Hausdorff values are MONAI's float32 values (bit for bit
in the tests; float64 arrays holding float32 numbers); the surface Dice is the exact
ratio of the same two counts in float64, which rounds to MONAI's float32 value. The
distances are computed in float64 as ``sqrt(sum((delta_k * spacing_k) ** 2))`` from the
integer offsets, then rounded to float32; MONAI's KD-tree subtracts scaled coordinates
instead, which can differ in the last float64 bit, almost never enough to change the
float32 value (never seen in the tests).

Ignored voxels: a truth voxel equal to ``ignore_index`` belongs to no class, in both maps
(the prediction there is no class either): masks are ``(truth == c)`` and ``(pred == c) &
(truth != ignore_index)``. These are the masks of MONAI's own ``ignore_index`` (MONAI 1.6
has one: ``compute_surface_dice(..., ignore_index=i)`` and ``HausdorffDistanceMetric(
ignore_index=i)``, with ``i`` outside the channels, multiply both one-hot inputs by "the
truth has a class here"; the functional ``compute_hausdorff_distance`` does not mask,
and a one-channel input is read as a label map there). A mask cut by an ignored region
has edges along the cut: ignoring changes the surfaces, it does not only leave voxels
out, the same as giving MONAI the masked one-hot maps.

Algorithm (per image; every class from one pass):

1. Edge maps: one pass over the two label maps marks each edge voxel with its class
   (every voxel is an edge of at most one class, its own), in raster order lists per
   class (:func:`_edge_share`, :func:`_list_share`).
2. Nearest distances by probing: an edge voxel of class ``c`` in one map looks for a
   class-``c`` edge voxel of the other map at the integer offsets of a small ball, in
   increasing order of physical distance (:func:`probe_offsets`); the first hit is the
   exact nearest distance (:func:`_probe_share`). Most edge voxels lie within a few
   voxels of the other surface: a hit after a handful of reads.
3. The rest (further than the ball): an exact nearest-neighbour search in a KD-tree
   over the class's edge voxels of the other map, bucketed by grid cells (a cell's
   voxels form a leaf item; :func:`_tree_share`), queries in raster order, each bounded
   first by the previous query's nearest voxel.
4. Per class and direction: the count ``d <= tau`` and the quantile, as MONAI does them
   in float32 (:func:`_stats_share`).

Threads: each step is split into shares run by :func:`fastseg.kernels.run_shares`
(rows of the image, chunks of queries, trees by size); nothing is shared between
shares, so the results do not depend on the thread count.

Performance (``benchmarks/test_surface_distance.py``: 256^3, 14 classes, both metrics,
2 shared cores): fastseg 0.15-0.2 s, MONAI 1.6.1 20-50 s (its time goes to one-hot
tensor handling, cropping and erosion per class and direction, then SciPy's KD-tree).
Phases of a fastseg call there: edges 35 ms, lists 17 ms, probes 40 ms, trees 55 ms,
quantiles 10 ms.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numba
import numpy as np
from numba import njit

from fastseg import kernels
from fastseg.formulas import nanmean
from fastseg.image_stats import ImageStat

# Numba options, as kernels.KERNEL / HELPER. Written out here, not imported: Numba's
# on-disk cache is keyed by this file, and options imported from another module could
# change without invalidating it (see fastseg/kernels.py).
_OPTIONS: Any = {
    "nogil": True,
    "cache": True,
    # The distances and the float32 quantile must be MONAI's to the bit: no reordering,
    # no contraction into fused multiply-adds.
    "fastmath": False,
    "error_model": "numpy",
    # Indices come from the arrays' own shapes.
    "boundscheck": False,
}

#: Dtypes the edge pass is compiled for (both maps of one dtype); others are converted
#: (bool -> uint8, int8 / int16 / uint32 / uint64 -> int64).
LABEL_DTYPES = ("uint8", "uint16", "int32", "int64")
#: Integer offsets probed around an edge voxel before falling back to the KD-tree (about;
#: the ball is complete up to its radius). A probe costs a read or two, a tree search
#: about as much as a few hundred.
PROBES = 400
#: Queries per chunk of the probing pass (chunks go round-robin to the shares).
CHUNK = 4096
#: Grid cells per leaf of the KD-tree.
LEAF = 4
#: Shape of the KD-tree's grid cells, 3-D and 2-D (a cell's edge voxels are scanned
#: together).
CELL_3D = (8, 8, 8)
CELL_2D = (1, 16, 16)

# Slots of the per-share ``stats`` rows of the edge pass.
_TRUE_BAD = 0  # truth values outside [0, N) that are not the ignore index
_TRUE_BAD_VALUE = 1
_PRED_BAD = 2  # prediction values outside [0, N) where the truth is not ignored
_PRED_BAD_VALUE = 3
_N_STATS = 4


@dataclass(frozen=True, eq=False)
class SurfaceScores:
    """Surface metrics per image and class; float64 arrays of shape (B, N).

    Attributes
    ----------
    dice : ndarray or None
        Normalised surface Dice at the tolerance (None when no tolerance was given). NaN
        where the class is in neither map of the image; 0 where it is in one only.
    hd : ndarray
        The percentile Hausdorff distance (undirected: the larger of the two directed
        percentiles), in spacing units. NaN where the class is missing from either map
        (inf for the maximum, ``percentile=None``, when it is in one map only).
    """

    dice: np.ndarray | None
    hd: np.ndarray


# ------------------------------------------------------------------------ edge pass


@njit(**_OPTIONS)
def _valid(v, last):
    return (v >= 0) & (v <= last)


# The row loops below vectorise (measured: 0.6 ns against 14 ns per voxel written with
# bools and the flat index): each neighbouring row is a slice of its own, differences are
# XORs, and the constants have the labels' dtype.


@njit(**_OPTIONS)
def _edge_line(m, u, dn, a, b, out, last, none):
    """Voxels ``1 .. nx - 2`` of row `m`: its class where a neighbour differs, else `none`.

    `u`, `dn`: the rows before and after in the slice; `a`, `b`: in the slices before
    and after (`m` itself in 2-D: never different).
    """
    for x in range(1, m.size - 1):
        c = m[x]
        diff = (m[x - 1] ^ c) | (m[x + 1] ^ c) | (u[x] ^ c) | (dn[x] ^ c) | (a[x] ^ c) | (b[x] ^ c)
        out[x] = c if (diff != 0) & _valid(c, last) else none


@njit(**_OPTIONS)
def _edge_line_ignored(m, u, dn, a, b, tm, tu, td, ta, tb, ignore, out, last, none):
    """:func:`_edge_line` of a prediction row, truth voxels equal to `ignore` no class.

    Rows ``t*`` are the truth's, beside the prediction's.
    """
    for x in range(1, m.size - 1):
        c = m[x]
        diff = (m[x - 1] ^ c) | (m[x + 1] ^ c) | (u[x] ^ c) | (dn[x] ^ c) | (a[x] ^ c) | (b[x] ^ c)
        cut = ((tm[x - 1] == ignore) | (tm[x + 1] == ignore) | (tu[x] == ignore)
               | (td[x] == ignore) | (ta[x] == ignore) | (tb[x] == ignore))
        keep = _valid(c, last) & (tm[x] != ignore)
        out[x] = c if ((diff != 0) | cut) & keep else none


@njit(**_OPTIONS)
def _edge_share(truth, pred, base, shape, three_d, ignore, has_ignore, last, none,
                e_t, e_p, counts_t, counts_p, stats, t, n_threads):  # fmt: skip
    """Mark the edge voxels of share `t` of the rows of one image, and count them per class.

    `truth`, `pred`: flat batches; the image starts at `base`. ``e_t[i]`` / ``e_p[i]``
    become the class of voxel ``i`` where it is an edge voxel of that class, else `none`
    (N). A voxel is an edge voxel of its class iff a face neighbour (within the slice
    when not `three_d`) holds another class, or no class (ignored), or lies outside the
    image. Classes are ``0 .. last``; `ignore` and `last` have the labels' dtype
    (`has_ignore` False when the ignore index cannot occur). ``counts_*[t, c]`` count
    the edge voxels, ``counts_*[t, N]`` the others.
    """
    nz, ny, nx = shape[0], shape[1], shape[2]
    plane = ny * nx
    zs = plane if three_d else 0
    no_ignore = not has_ignore
    rows = nz * ny
    for r in range(rows * t // n_threads, rows * (t + 1) // n_threads):
        z = r // ny
        y = r - z * ny
        lo = r * nx
        g = base + lo
        tm = truth[g : g + nx]
        pm = pred[g : g + nx]
        out_t = e_t[lo : lo + nx]
        out_p = e_p[lo : lo + nx]
        bad_t = 0
        bad_p = 0
        for x in range(nx):
            kept = (tm[x] != ignore) | no_ignore
            bad_t += kept & (_valid(tm[x], last) ^ True)
            bad_p += kept & (_valid(pm[x], last) ^ True)
        if bad_t or bad_p:
            for x in range(nx):
                if has_ignore and tm[x] == ignore:
                    continue
                if not _valid(tm[x], last):
                    stats[t, _TRUE_BAD_VALUE] = np.int64(tm[x])
                if not _valid(pm[x], last):
                    stats[t, _PRED_BAD_VALUE] = np.int64(pm[x])
            stats[t, _TRUE_BAD] += bad_t
            stats[t, _PRED_BAD] += bad_p
        border = y == 0 or y == ny - 1 or (three_d and (z == 0 or z == nz - 1))
        if not border and nx > 2:
            ta = truth[g - zs : g - zs + nx]
            tb = truth[g + zs : g + zs + nx]
            tu = truth[g - nx : g]
            td = truth[g + nx : g + 2 * nx]
            _edge_line(tm, tu, td, ta, tb, out_t, last, none)
            pa = pred[g - zs : g - zs + nx]
            pb = pred[g + zs : g + zs + nx]
            pu = pred[g - nx : g]
            pd = pred[g + nx : g + 2 * nx]
            if has_ignore:
                _edge_line_ignored(pm, pu, pd, pa, pb, tm, tu, td, ta, tb, ignore, out_p,
                                   last, none)  # fmt: skip
            else:
                _edge_line(pm, pu, pd, pa, pb, out_p, last, none)
        # voxels with a neighbour outside the image: every one of a class is an edge
        for x in range(nx):
            if not (border or x == 0 or x == nx - 1):
                continue
            kept = not (has_ignore and tm[x] == ignore)
            out_t[x] = tm[x] if _valid(tm[x], last) and kept else none
            out_p[x] = pm[x] if _valid(pm[x], last) and kept else none
        for x in range(nx):
            if out_t[x] != none:
                counts_t[t, out_t[x]] += 1
            if out_p[x] != none:
                counts_p[t, out_p[x]] += 1


@njit(**_OPTIONS)
def _list_share(e_t, e_p, none, shape, pos_t, pos_p, list_t, list_p, t, n_threads):
    """Write the flat index of every edge voxel of share `t`'s rows into its class's list.

    ``pos_*[t, c]`` is where share `t`'s first edge voxel of class ``c`` goes: lists are
    class-major, each class in raster order.
    """
    rows = shape[0] * shape[1]
    nx = shape[2]
    lo = rows * t // n_threads * nx
    hi = rows * (t + 1) // n_threads * nx
    for i in range(lo, hi):
        c = e_t[i]
        if c != none:
            list_t[pos_t[t, c]] = i
            pos_t[t, c] += 1
        c = e_p[i]
        if c != none:
            list_p[pos_p[t, c]] = i
            pos_p[t, c] += 1


# ------------------------------------------------------------------------ probing


@njit(**_OPTIONS)
def _probe_share(queries, n_first, e_t, e_p, shape, off_flat, off_z, off_y, off_x, off_d2,
                 margin, out, t, n_threads):  # fmt: skip
    """Squared distance of each query to its class's nearest edge voxel in the other map.

    ``queries[:n_first]`` are prediction edge voxels (looking in the truth's edges),
    the rest truth edge voxels (looking in the prediction's). Offsets are probed in
    increasing squared distance ``off_d2``: the first hit is the nearest; -1 where no
    offset hits (left to the KD-tree). Chunks of :data:`CHUNK` queries go round-robin to
    the shares.
    """
    nz, ny, nx = shape[0], shape[1], shape[2]
    plane = ny * nx
    n = queries.size
    n_off = off_d2.size
    for k in range(t, (n + CHUNK - 1) // CHUNK, n_threads):
        for j in range(k * CHUNK, min(n, (k + 1) * CHUNK)):
            q = queries[j]
            if j < n_first:
                c = e_p[q]
                sites = e_t
            else:
                c = e_t[q]
                sites = e_p
            z = q // plane
            y = (q - z * plane) // nx
            x = q - z * plane - y * nx
            found = -1.0
            inside = (z >= margin[0] and z < nz - margin[0] and y >= margin[1]
                      and y < ny - margin[1] and x >= margin[2] and x < nx - margin[2])  # fmt: skip
            if inside:  # no bounds to check
                for m in range(n_off):
                    if sites[q + off_flat[m]] == c:
                        found = off_d2[m]
                        break
            else:
                for m in range(n_off):
                    zz = z + off_z[m]
                    yy = y + off_y[m]
                    xx = x + off_x[m]
                    if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                        continue
                    if sites[q + off_flat[m]] == c:
                        found = off_d2[m]
                        break
            out[j] = found


def probe_offsets(spacing: Sequence[float] | np.ndarray, three_d: bool,
                  probes: int | None = None) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The integer offsets of a ball of about `probes` voxels (:data:`PROBES`), nearest first.

    Returns ``(z, y, x, d2, margin)``: int64 offsets per axis, their squared physical
    distances (float64, computed as the distances are), and the largest offset per axis.
    The ball is complete: it holds every offset up to its largest distance.
    """
    s = np.asarray(spacing, np.float64)
    cell = float(s.prod()) if three_d else float(s[1] * s[2])  # physical voxel size
    volume = (PROBES if probes is None else probes) * cell
    radius = (3 * volume / (4 * math.pi)) ** (1 / 3) if three_d else math.sqrt(volume / math.pi)
    reach = [int(radius // v) for v in s]
    if not three_d:
        reach[0] = 0
    axes = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    z, y, x = (a.ravel().astype(np.int64) for a in axes)
    d2 = _squared(z, y, x, s)
    keep = d2 <= radius * radius
    z, y, x, d2 = z[keep], y[keep], x[keep], d2[keep]
    order = np.lexsort((x, y, z, d2))
    margin = np.array(reach, np.int64)
    return z[order], y[order], x[order], d2[order], margin


def _squared(z: np.ndarray, y: np.ndarray, x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Squared distance of integer offsets, summed as :func:`_dist2` sums them."""
    a = z * s[0]
    b = y * s[1]
    c = x * s[2]
    return np.asarray(a * a + b * b + c * c, np.float64)


# ------------------------------------------------------------------------ KD-tree


@njit(**_OPTIONS)
def _dist2(az, ay, ax, bz, by, bx, s0, s1, s2):
    a = (az - bz) * s0
    b = (ay - by) * s1
    c = (ax - bx) * s2
    return a * a + b * b + c * c


@njit(**_OPTIONS)
def _select(perm, key, lo, hi, kth):
    """Reorder ``perm[lo:hi]`` so that ``perm[kth]`` holds the `kth` smallest `key`.

    Hoare partitioning: many equal keys (grid coordinates) still split in the middle.
    """
    while hi - lo > 1:
        a, b, c = key[perm[lo]], key[perm[(lo + hi) // 2]], key[perm[hi - 1]]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i = lo
        j = hi - 1
        while i <= j:
            while key[perm[i]] < pivot:
                i += 1
            while key[perm[j]] > pivot:
                j -= 1
            if i <= j:
                perm[i], perm[j] = perm[j], perm[i]
                i += 1
                j -= 1
        if kth <= j:
            hi = j + 1
        elif kth >= i:
            lo = i
        else:
            return


@njit(**_OPTIONS)
def _buckets(sites, shape, cell):
    """The points `sites` (flat indices) sorted by cell of a grid, and the cells' boxes.

    Returns ``(pz, py, px, box, ranges)``: coordinates in cell order (raster order within
    a cell); per non-empty cell ``box[k] = [zmin, zmax, ymin, ymax, xmin, xmax]`` of its
    points and ``ranges[k] = [start, stop)`` of them.
    """
    ny, nx = shape[1], shape[2]
    plane = ny * nx
    gz = (shape[0] + cell[0] - 1) // cell[0]
    gy = (ny + cell[1] - 1) // cell[1]
    gx = (nx + cell[2] - 1) // cell[2]
    n = sites.size
    of = np.empty(n, np.int64)
    start = np.zeros(gz * gy * gx + 1, np.int64)
    for i in range(n):
        f = sites[i]
        z = f // plane
        y = (f - z * plane) // nx
        x = f - z * plane - y * nx
        k = ((z // cell[0]) * gy + y // cell[1]) * gx + x // cell[2]
        of[i] = k
        start[k + 1] += 1
    m = 0
    for k in range(start.size - 1):
        m += start[k + 1] > 0
        start[k + 1] += start[k]
    pz = np.empty(n, np.int64)
    py = np.empty(n, np.int64)
    px = np.empty(n, np.int64)
    fill = start[:-1].copy()
    for i in range(n):
        f = sites[i]
        j = fill[of[i]]
        fill[of[i]] += 1
        pz[j] = f // plane
        py[j] = (f - pz[j] * plane) // nx
        px[j] = f - pz[j] * plane - py[j] * nx
    box = np.empty((m, 6), np.int64)
    ranges = np.empty((m, 2), np.int64)
    m = 0
    for k in range(start.size - 1):
        lo, hi = start[k], start[k + 1]
        if hi == lo:
            continue
        ranges[m, 0], ranges[m, 1] = lo, hi
        box[m, 0] = box[m, 1] = pz[lo]
        box[m, 2] = box[m, 3] = py[lo]
        box[m, 4] = box[m, 5] = px[lo]
        for j in range(lo + 1, hi):
            box[m, 0] = min(box[m, 0], pz[j])
            box[m, 1] = max(box[m, 1], pz[j])
            box[m, 2] = min(box[m, 2], py[j])
            box[m, 3] = max(box[m, 3], py[j])
            box[m, 4] = min(box[m, 4], px[j])
            box[m, 5] = max(box[m, 5], px[j])
        m += 1
    return pz, py, px, box, ranges


@njit(**_OPTIONS)
def _build(box, s0, s1, s2):
    """A KD-tree of boxes: median splits of their centres on the widest physical axis.

    Returns ``(perm, node)``: the boxes' order (leaves are ranges of it, at most
    :data:`LEAF` boxes) and per node ``[lo, hi, left, zmin, zmax, ymin, ymax, xmin,
    xmax]``: its range, its first child (the second follows; -1 for a leaf) and the box
    around its boxes.
    """
    m = box.shape[0]
    perm = np.arange(m)
    keys = np.empty((3, m), np.int64)
    for k in range(m):  # twice the centres
        keys[0, k] = box[k, 0] + box[k, 1]
        keys[1, k] = box[k, 2] + box[k, 3]
        keys[2, k] = box[k, 4] + box[k, 5]
    node = np.empty((2 * (m // ((LEAF + 1) // 2) + 1), 9), np.int64)
    stack = np.empty(128, np.int64)
    node[0, 0] = 0
    node[0, 1] = m
    n_nodes = 1
    top = 0
    if m > 0:
        stack[0] = 0
        top = 1
    while top > 0:
        top -= 1
        k = stack[top]
        lo, hi = node[k, 0], node[k, 1]
        for a in range(6):
            node[k, 3 + a] = box[perm[lo], a]
        for i in range(lo + 1, hi):
            p = perm[i]
            for a in range(0, 6, 2):
                node[k, 3 + a] = min(node[k, 3 + a], box[p, a])
                node[k, 4 + a] = max(node[k, 4 + a], box[p, a + 1])
        node[k, 2] = -1
        if hi - lo <= LEAF:
            continue
        wz = (node[k, 4] - node[k, 3]) * s0
        wy = (node[k, 6] - node[k, 5]) * s1
        wx = (node[k, 8] - node[k, 7]) * s2
        axis = 0 if wz >= wy and wz >= wx else (1 if wy >= wx else 2)
        mid = (lo + hi) // 2
        _select(perm, keys[axis], lo, hi, mid)
        left = n_nodes
        node[left, 0], node[left, 1] = lo, mid
        node[left + 1, 0], node[left + 1, 1] = mid, hi
        node[k, 2] = left
        n_nodes += 2
        stack[top] = left
        stack[top + 1] = left + 1
        top += 2
    return perm, node


@njit(**_OPTIONS)
def _box_d2(b, z, y, x, s0, s1, s2):
    """Squared physical distance from ``(z, y, x)`` to the box ``b = [zmin, zmax, ...]``."""
    dz = max(b[0] - z, 0, z - b[1]) * s0
    dy = max(b[2] - y, 0, y - b[3]) * s1
    dx = max(b[4] - x, 0, x - b[5]) * s2
    return dz * dz + dy * dy + dx * dx


@njit(**_OPTIONS)
def _nearest(tree, points, z, y, x, s0, s1, s2, best, best_i, stack):
    """The squared distance to the nearest point if below `best`, and the point's index."""
    perm, node, box, ranges = tree
    pz, py, px = points
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        k = stack[top]
        if _box_d2(node[k, 3:], z, y, x, s0, s1, s2) >= best:
            continue
        left = node[k, 2]
        if left < 0:
            for i in range(node[k, 0], node[k, 1]):
                c = perm[i]
                if _box_d2(box[c], z, y, x, s0, s1, s2) >= best:
                    continue
                for p in range(ranges[c, 0], ranges[c, 1]):
                    d2 = _dist2(pz[p], py[p], px[p], z, y, x, s0, s1, s2)
                    if d2 < best:
                        best = d2
                        best_i = p
            continue
        dl = _box_d2(node[left, 3:], z, y, x, s0, s1, s2)
        dr = _box_d2(node[left + 1, 3:], z, y, x, s0, s1, s2)
        if dl <= dr:  # the nearer child is popped first
            stack[top] = left + 1
            stack[top + 1] = left
        else:
            stack[top] = left
            stack[top + 1] = left + 1
        top += 2
    return best, best_i


@njit(**_OPTIONS)
def _tree_share(tasks, owner, sites, queries, missing, shape, spacing, cell, out, t,
                n_threads):  # fmt: skip
    """Exact nearest distances of the queries the probes missed, one KD-tree per task.

    Task ``k`` (``tasks[k] = [site_lo, site_hi, miss_lo, miss_hi]``, run by share
    ``owner[k]``): the sites ``sites[site_lo:site_hi]`` (flat indices of one class's edge
    voxels in one map) and the queries ``queries[missing[i]]`` for ``i`` in
    ``[miss_lo, miss_hi)``, whose squared distances go to ``out[missing[i]]`` (inf when
    there is no site). The tree's leaves are the sites of grid cells of shape `cell`
    (sorting sites into cells costs a pass; a tree of single points, 20 times more).
    """
    ny, nx = shape[1], shape[2]
    plane = ny * nx
    s0, s1, s2 = spacing[0], spacing[1], spacing[2]
    stack = np.empty(128, np.int64)
    for k in range(tasks.shape[0]):
        if owner[k] != t:
            continue
        pz, py, px, box, ranges = _buckets(sites[tasks[k, 0] : tasks[k, 1]], shape, cell)
        perm, node = _build(box, s0, s1, s2)
        prev = -1
        for i in range(tasks[k, 2], tasks[k, 3]):
            j = missing[i]
            q = queries[j]
            z = q // plane
            y = (q - z * plane) // nx
            x = q - z * plane - y * nx
            best = np.inf
            if pz.size == 0:
                out[j] = best
                continue
            if prev >= 0:  # the previous query's nearest point bounds this one
                best = _dist2(pz[prev], py[prev], px[prev], z, y, x, s0, s1, s2)
            best, prev = _nearest((perm, node, box, ranges), (pz, py, px), z, y, x, s0, s1,
                                  s2, best, prev, stack)  # fmt: skip
            out[j] = best


# ------------------------------------------------------------------------ statistics


@njit(**_OPTIONS)
def _fma32(a, b, c):
    """``a * b + c`` of float32 numbers rounded once to float32, as a fused multiply-add.

    The product is exact in float64 (24 + 24 bits); the sum is rounded to odd (its exact
    error from TwoSum decides), which rounds correctly to float32 (53 >= 24 + 2 bits).
    """
    p = np.float64(a) * np.float64(b)
    q = np.float64(c)
    s = p + q
    if not np.isfinite(s):
        return np.float32(s)
    v = s - p
    e = (p - (s - v)) + (q - v)
    if e != 0.0 and np.array([s]).view(np.int64)[0] & 1 == 0:
        s = np.nextafter(s, np.inf if e > 0 else -np.inf)
    return np.float32(s)


@njit(**_OPTIONS)
def _quantile32(d, q32):
    """``torch.quantile(d, q)`` of float32 `d` (1-D, no NaN), linear, all in float32.

    ``rank = q * (n - 1)`` in float32, then torch's CPU ``lerp`` of the two order
    statistics around it (ATen/native/Lerp.h), whose multiply-adds the compiler fuses
    (checked against torch 2.13 on x86-64: 20 000 random quantiles, every one equal; the
    unfused form differs in the last bit about once in 2 000).
    """
    n = d.size
    if n == 0:
        return np.float32(np.nan)
    rank = q32 * np.float32(n - 1)
    below = np.int64(rank)
    w = rank - np.float32(below)
    above = np.int64(np.ceil(rank))
    part = np.partition(d, above)
    lo = part[below] if above == below else np.max(part[:above])
    hi = part[above]
    diff = hi - lo
    if abs(w) < np.float32(0.5):
        return _fma32(w, diff, lo)
    return _fma32(-diff, np.float32(1.0) - w, hi)


@njit(**_OPTIONS)
def _stats_share(out, bounds, owner, tau32, use_max, q32, counts, quantiles, t, n_threads):
    """Per class and direction: distances within the tolerance, and the quantile.

    Group ``g`` is ``out[bounds[g]:bounds[g + 1]]`` (squared distances, inf for none) of
    class ``g % N``; ``counts[g]`` gets the distances ``<= tau32[g % N]`` as float32,
    ``quantiles[g]`` the float32 quantile (the maximum with `use_max`).
    """
    n_classes = tau32.size
    for g in range(bounds.size - 1):
        if owner[g] != t:
            continue
        lo, hi = bounds[g], bounds[g + 1]
        d = np.empty(hi - lo, np.float32)
        tau = tau32[g % n_classes]
        hits = 0
        for i in range(lo, hi):
            v = np.float32(np.sqrt(out[i]))
            d[i - lo] = v
            if v <= tau:
                hits += 1
        counts[g] = hits
        if d.size == 0:
            quantiles[g] = np.nan
        elif use_max:
            quantiles[g] = np.max(d)
        else:
            quantiles[g] = _quantile32(d, q32)


# ------------------------------------------------------------------------ the API


def _per_item(value: Any, count: int, name: str, item: str, positive: bool) -> np.ndarray:
    """`value` as `count` float64s: one number for all, or one per `item`.

    Finite, and > 0 (`positive`) or >= 0; else a ValueError naming `name`.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number or one per {item}; got {value!r}")
    if isinstance(value, numbers.Real):
        values = np.full(count, float(value))
    else:
        try:
            values = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or one per {item}; got {value!r}") from None
        if values.shape != (count,):
            raise ValueError(
                f"{name} must be a number or {count} values (one per {item}); got {value!r}"
            )
    low = np.any(values <= 0) if positive else np.any(values < 0)
    if not np.all(np.isfinite(values)) or low:
        raise ValueError(f"{name} must be finite and {'>' if positive else '>='} 0; got {value!r}")
    return values


def _as_spacing(spacing: Any, ndim: int) -> np.ndarray:
    return np.ones(ndim) if spacing is None else _per_item(
        spacing, ndim, "spacing", "spatial axis", positive=True)  # fmt: skip


def _as_tolerance(tolerance: Any, n: int) -> np.ndarray:
    return _per_item(tolerance, n, "tolerance", "class", positive=False)


def _labels(a: Any, name: str) -> np.ndarray:
    x = np.asarray(a)
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer label map; got dtype {x.dtype}")
    if x.dtype.name not in LABEL_DTYPES or not x.dtype.isnative:
        x = x.astype(np.int64)
    return np.ascontiguousarray(x)


def surface_scores(
    y_true: Any,
    y_pred: Any,
    num_classes: int,
    *,
    spacing: float | Sequence[float] | None = None,
    tolerance: float | Sequence[float] | None = None,
    percentile: float | None = 95.0,
    ignore_index: int | None = None,
    n_threads: int | None = None,
) -> SurfaceScores:
    """Normalised surface Dice and percentile Hausdorff distance per image and class.

    MONAI's ``compute_surface_dice`` and ``compute_hausdorff_distance`` (undirected,
    Euclidean, ``include_background=True``) on the one-hot forms of the two maps; see the
    module docstring for their conventions (edges, empty classes, the float32 quantile).

    Parameters
    ----------
    y_true, y_pred : array_like of integers, shape (B, *spatial)
        Class-index label maps, spatial 2-D or 3-D. Truth values are classes
        ``[0, num_classes)`` or `ignore_index`; predictions are classes (where the truth
        is not ignored).
    num_classes : int
        N; every class ``0 .. N-1`` is scored (the background too).
    spacing : float or sequence of float, optional
        Voxel size: one for all axes or one per spatial axis, in the order of the axes
        (default 1). Distances and tolerances are in these units.
    tolerance : float or sequence of float, optional
        Surface Dice tolerance ``tau`` (MONAI's ``class_thresholds``): one for all
        classes or one per class, finite and ``>= 0``. None: no surface Dice.
    percentile : float or None, optional
        Percentile of the Hausdorff distance, in ``(0, 100]`` (default 95); None for the
        maximum (the Hausdorff distance itself).
    ignore_index : int, optional
        A truth value that is no class: such voxels belong to no class in either map.
    n_threads : int, optional
        Threads (default ``numba.get_num_threads()``).

    Returns
    -------
    SurfaceScores
        ``dice`` and ``hd``, float64 arrays of shape (B, N).

    Raises
    ------
    ValueError
        Bad shapes, spacing, tolerance or percentile; values that are no class.
    TypeError
        Label maps that are not integers.
    """
    truth = _labels(y_true, "y_true")
    pred = _labels(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {truth.shape} and {pred.shape}")
    if truth.ndim not in (3, 4):
        raise ValueError(
            f"label maps must be (B, H, W) or (B, D, H, W); got shape {truth.shape}"
        )
    if pred.dtype != truth.dtype:
        common = np.promote_types(truth.dtype, pred.dtype)
        kept = common if common.name in LABEL_DTYPES else np.dtype(np.int64)
        truth, pred = truth.astype(kept), pred.astype(kept)
    n = int(num_classes)
    if n != num_classes or n < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    three_d = truth.ndim == 4
    steps = _as_spacing(spacing, truth.ndim - 1)
    taus = None if tolerance is None else _as_tolerance(tolerance, n)
    if percentile is not None:
        p = float(percentile)
        if not 0 < p <= 100:
            raise ValueError(
                f"percentile must be in (0, 100] (None for the maximum); got {percentile!r}"
            )
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"ignore_index must be an integer; got {ignore_index!r}")
        if 0 <= ignore_index < n:
            raise ValueError(
                f"ignore_index {ignore_index} is a class (0 <= ignore_index < {n})"
            )
    threads = numba.get_num_threads() if n_threads is None else int(n_threads)
    if threads < 1:
        raise ValueError(f"n_threads must be >= 1; got {n_threads!r}")

    b = truth.shape[0]
    shape3 = truth.shape[1:] if three_d else (1, *truth.shape[1:])
    spacing3 = steps if three_d else np.concatenate([[1.0], steps])
    hd = np.full((b, n), np.nan)
    dice = None if taus is None else np.full((b, n), np.nan)
    if truth.size == 0:
        return SurfaceScores(dice, hd)
    tau32 = (taus if taus is not None else np.zeros(n)).astype(np.float32)
    q32 = np.float32(0.0 if percentile is None else float(percentile) / 100)
    probes = probe_offsets(spacing3, three_d)
    plan = _Plan(shape3, three_d, spacing3, probes, n, threads, ignore_index, truth.dtype)
    # Readonly views, as fastseg.kernels passes them: one compiled form for writable and
    # readonly (memory-mapped, Zarr) inputs alike.
    flat_t = truth.reshape(-1)
    flat_p = pred.reshape(-1)
    flat_t.flags.writeable = False
    flat_p.flags.writeable = False
    for i in range(b):
        counts, quantiles, sizes = plan.image(flat_t, flat_p, i, tau32, percentile is None,
                                              q32)  # fmt: skip
        # groups: direction 0 (prediction edges) classes 0..N-1, then direction 1
        # A class in one map only: MONAI's distances are then inf in both directions
        # (as many as the map's edge voxels), not none in one of them.
        q_p, q_t = quantiles[:n], quantiles[n:]
        q_p = np.where(sizes[:n] == 0, q_t, q_p)
        q_t = np.where(sizes[n:] == 0, q_p, q_t)
        hd[i] = np.maximum(q_p, q_t)  # NaN if either is (torch.max)
        if dice is not None:
            total = sizes[:n] + sizes[n:]
            hits = counts[:n] + counts[n:]
            with np.errstate(invalid="ignore", divide="ignore"):
                dice[i] = np.where(total > 0, hits / np.maximum(total, 1), np.nan)
    return SurfaceScores(dice, hd)


class _Plan:
    """The buffers and constants of one call, reused image after image."""

    def __init__(self, shape: tuple[int, ...], three_d: bool, spacing: np.ndarray,
                 probes: tuple[np.ndarray, ...], n: int, threads: int,
                 ignore_index: int | None, dtype_of_labels: np.dtype) -> None:  # fmt: skip
        self.shape = np.asarray(shape, np.int64)
        self.three_d = three_d
        self.spacing = np.asarray(spacing, np.float64)
        z, y, x, d2, margin = probes
        nz, ny, nx = (int(v) for v in shape)
        self.off = (z * (ny * nx) + y * nx + x, z, y, x, d2, margin)
        self.n = n
        self.threads = threads
        # the ignore index in the labels' dtype; one the dtype cannot hold never occurs
        info = np.iinfo(dtype_of_labels)
        self.has_ignore = ignore_index is not None and info.min <= ignore_index <= info.max
        self.ignore = dtype_of_labels.type(ignore_index if self.has_ignore else 0)
        size = nz * ny * nx
        # edge maps: a class, or N for no edge
        dtype = np.uint8 if n <= np.iinfo(np.uint8).max else np.int32
        self.none = dtype(n)
        self.last = dtype_of_labels.type(min(n - 1, info.max))
        self.e_t = np.empty(size, dtype)
        self.e_p = np.empty(size, dtype)

    def image(self, truth: np.ndarray, pred: np.ndarray, i: int, tau32: np.ndarray,
              use_max: bool, q32: np.float32) -> tuple[np.ndarray, ...]:  # fmt: skip
        """(counts, quantiles, sizes) per group (direction-major, then class) of image `i`."""
        n, threads = self.n, self.threads
        size = self.e_t.size
        rows = int(self.shape[0] * self.shape[1])
        shares = max(1, min(threads, rows))
        counts_t = np.zeros((shares, n), np.int64)
        counts_p = np.zeros((shares, n), np.int64)
        stats = np.zeros((shares, _N_STATS), np.int64)
        kernels.run_shares(_edge_share, shares, truth, pred, i * size, self.shape,
                           self.three_d, self.ignore, self.has_ignore, self.last, self.none,
                           self.e_t, self.e_p, counts_t, counts_p, stats)  # fmt: skip
        _raise_bad(stats, n)
        list_t, pos_t, off_t = _lists(counts_t)
        list_p, pos_p, off_p = _lists(counts_p)
        kernels.run_shares(_list_share, shares, self.e_t, self.e_p, self.none, self.shape,
                           pos_t, pos_p, list_t, list_p)  # fmt: skip
        n_p = list_p.size
        queries = np.concatenate([list_p, list_t])
        out = np.empty(queries.size, np.float64)
        chunks = (queries.size + CHUNK - 1) // CHUNK
        flat, oz, oy, ox, d2, margin = self.off
        kernels.run_shares(_probe_share, max(1, min(threads, chunks)), queries, n_p,
                           self.e_t, self.e_p, self.shape, flat, oz, oy, ox, d2, margin,
                           out)  # fmt: skip
        # group g = direction * N + c: its queries and the other map's sites
        bounds = np.concatenate([off_p[:-1], n_p + off_t])
        site_bounds = np.concatenate([off_t[:-1], list_t.size + off_p])
        sites = np.concatenate([list_t, list_p])
        missing = np.flatnonzero(out < 0)
        if missing.size:
            group = np.searchsorted(bounds, missing, side="right") - 1
            groups, first = np.unique(group, return_index=True)
            last = np.append(first[1:], missing.size)
            tasks = np.stack([site_bounds[groups], site_bounds[groups + 1], first, last],
                             axis=1).astype(np.int64)  # fmt: skip
            # a tree costs about a pass over its sites, a query some leaves
            cost = (tasks[:, 1] - tasks[:, 0]) + 4 * (tasks[:, 3] - tasks[:, 2])
            tree_shares = min(threads, len(tasks))
            cell = np.array(CELL_3D if self.three_d else CELL_2D, np.int64)
            kernels.run_shares(_tree_share, tree_shares, tasks, _spread(cost, tree_shares),
                               sites, queries, missing, self.shape, self.spacing, cell,
                               out)  # fmt: skip
        n_groups = 2 * n
        hits = np.zeros(n_groups, np.int64)
        quantiles = np.empty(n_groups, np.float32)
        owner = _spread(np.diff(bounds), threads)
        kernels.run_shares(_stats_share, threads, out, bounds, owner, tau32, use_max, q32,
                           hits, quantiles)  # fmt: skip
        return hits, quantiles.astype(np.float64), np.diff(bounds)


def _lists(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(list buffer, per-share start positions, class offsets) of per-share class counts."""
    per_class = counts.sum(axis=0)
    offsets = np.zeros(per_class.size + 1, np.int64)
    np.cumsum(per_class, out=offsets[1:])
    pos = offsets[:-1][None, :] + np.cumsum(counts, axis=0) - counts
    return np.empty(int(offsets[-1]), np.int64), np.ascontiguousarray(pos), offsets


def _spread(cost: np.ndarray, threads: int) -> np.ndarray:
    """Owner share of each task: largest first, each to the least loaded share."""
    owner = np.zeros(cost.size, np.int64)
    load = np.zeros(threads)
    for k in np.argsort(-cost, kind="stable"):
        t = int(np.argmin(load))
        owner[k] = t
        load[t] += float(cost[k]) + 1
    return owner


def _raise_bad(stats: np.ndarray, n: int) -> None:
    bad_t = int(stats[:, _TRUE_BAD].sum())
    bad_p = int(stats[:, _PRED_BAD].sum())
    if bad_t:
        value = int(stats[stats[:, _TRUE_BAD] > 0, _TRUE_BAD_VALUE][0])
        raise ValueError(
            f"{bad_t} truth voxels are no class in [0, {n}) nor the ignore index "
            f"(e.g. {value})"
        )
    if bad_p:
        value = int(stats[stats[:, _PRED_BAD] > 0, _PRED_BAD_VALUE][0])
        raise ValueError(f"{bad_p} predicted voxels are no class in [0, {n}) (e.g. {value})")


# ------------------------------------------------------------------ the statistic


def check_surface_options(tolerance: Any, spacing: Any, percentile: Any) -> dict[str, Any]:
    """The surface options as a JSON-able setting, checked.

    ``tolerance``, ``spacing`` and ``percentile``; a ValueError names a bad one.
    """
    if tolerance is None:
        raise ValueError("surface metrics need a tolerance (surface=tau, in spacing units)")
    tol = np.asarray(tolerance, np.float64) if not isinstance(tolerance, bool) else None
    if tol is None or tol.ndim > 1 or not np.all(np.isfinite(tol)) or np.any(tol < 0):
        raise ValueError(
            f"surface tolerance must be a number >= 0 or one per class; got {tolerance!r}"
        )
    space = None
    if spacing is not None:
        space = np.asarray(spacing, np.float64) if not isinstance(spacing, bool) else None
        if space is None or space.ndim > 1 or not np.all(np.isfinite(space)) or np.any(
            space <= 0
        ):
            raise ValueError(
                f"spacing must be a number > 0 or one per spatial axis; got {spacing!r}"
            )
    if percentile is not None and (
        isinstance(percentile, bool)
        or not isinstance(percentile, numbers.Real)
        or not 0 < float(percentile) <= 100
    ):
        raise ValueError(
            f"percentile must be in (0, 100], or None for the maximum; got {percentile!r}"
        )
    # One value in a list is that value for every class / axis.
    return {
        "tolerance": tol.tolist() if tol.size != 1 else float(tol.reshape(-1)[0]),
        "spacing": None if space is None else (
            space.tolist() if space.size != 1 else float(space.reshape(-1)[0])),
        "percentile": None if percentile is None else float(percentile),
    }


@dataclass(frozen=True, eq=False)
class SurfaceStat(ImageStat):
    """Surface Dice and percentile Hausdorff distance per image (case) and class.

    Attributes
    ----------
    dice, hd : ndarray of float64, shape (B, N)
        As :class:`SurfaceScores`, with MONAI's NaN for classes absent from a case.
    tolerance : float or list of float
        The surface Dice tolerance (one per class, or one for all), in spacing units.
    spacing : list of float or None
        The spacing asked for (None: each file's own, e.g. a NIfTI header's, else 1).
    percentile : float or None
        The Hausdorff percentile (None: the maximum).

    Per-case scores: images do not add up, so parts of one image never merge (out of
    core, each image is scored in one block). The class values of a data set are the
    means over the cases that have one (NaN left out, as MONAI's ``mean_batch``).
    """

    KIND: ClassVar[str] = "surface"
    ROWS: ClassVar[tuple[str, ...]] = ("dice", "hd")
    ADDITIVE: ClassVar[bool] = False

    dice: np.ndarray
    hd: np.ndarray
    tolerance: float | list[float]
    spacing: list[float] | None = None
    percentile: float | None = 95.0

    def __post_init__(self) -> None:
        for name in self.ROWS:
            a = getattr(self, name)
            if a.ndim != 2 or a.shape != self.dice.shape or a.dtype != np.float64:
                raise ValueError(
                    f"surface {name} must be float64 of one (images, classes) shape; got "
                    f"{a.dtype} {a.shape}"
                )
        setting = check_surface_options(self.tolerance, self.spacing, self.percentile)
        tol = setting["tolerance"]
        object.__setattr__(self, "tolerance", tol)
        object.__setattr__(self, "spacing", setting["spacing"])
        object.__setattr__(self, "percentile", setting["percentile"])

    @property
    def hd_name(self) -> str:
        """The Hausdorff column's name: ``hd95`` for the 95th percentile, ``hd`` for the max."""
        p = self.percentile
        return "hd" if p is None else f"hd{p:g}".replace(".", "_")

    def class_values(self) -> dict[str, np.ndarray]:
        """``surface_dice`` and ``hd95`` (:attr:`hd_name`): means over the cases, per class."""
        return {"surface_dice": nanmean(self.dice, axis=0), self.hd_name: nanmean(self.hd, axis=0)}
