"""Headless, batched z-buffer rendering of BFM meshes: normal maps, silhouettes, depth.

One `Renderer` owns one OpenGL 3.3+ context created through EGL (Mesa llvmpipe on a CPU-only
machine, the NVIDIA driver on a GPU one; no display needed), one program per output kind
and its buffers; the batched triangle index buffer is uploaded once (and only re-uploaded
if a larger batch comes).

How a batch is drawn (one draw call per batch of up to `MAX_TILES` faces):
- the mesh is a level of detail of the BFM (`selfswap.geometry.simplify`) matched to R:
  a software rasteriser pays per triangle, and at R = 128 most of the 76k BFM triangles
  would be smaller than a pixel;
- per-vertex normals are computed on the CPU from the *posed* mesh (area-weighted sums of
  triangle normals, one sparse product per face) and oriented so that the outside of the
  face points towards the viewer whatever the camera's handedness;
- posed vertices `(B, N, 3)` in crop pixels (x right, y down, depth towards the viewer, as
  `selfswap.geometry.mesh` makes them) and their normals go into two vertex buffers; the
  index buffer holds the triangles of B faces, face b offset by b·N, so the vertex shader
  knows its face as `gl_VertexID / N` and places it in its own R×R tile of an atlas
  framebuffer (clip distances keep a face inside its tile; they are switched on only when
  a face actually leaves its tile, as they cost time on llvmpipe);
- the atlas is read back with a single `glReadPixels` and cut into tiles.

Conventions of the outputs (all float32, `(B, C, R, R)`, row 0 at the top of the crop):
- `normals` `(B, 3, R, R)`: unit camera-space normals inside the silhouette, zero outside,
  in a right-handed view frame: x right, y **up**, z towards the viewer (a face seen from
  the front is mostly +z; shown as an image, `(n + 1) / 2` gives the usual bluish map);
- `silhouette` `(B, 1, R, R)`: 1 where the mesh covers the pixel centre, else 0;
- `depth` `(B, 1, R, R)` (optional): the posed depth (crop pixel units, larger = nearer)
  of the visible surface, zero outside;
- `attributes` `(B, C, R, R)` (optional, C ≤ 16): any per-vertex values `(B, N, C)` given
  by the caller (e.g. where each vertex lies in another image, see
  `selfswap.geometry.texture`), interpolated linearly over the visible triangles (the
  cameras are affine, so this is exact), zero outside.
Pixel (i, j) is sampled at its centre, i.e. at crop coordinates x = j, y = i, the same
convention as OpenCV's `warpAffine` used by the alignment.

GL's window origin is bottom-left; we map image row y to window row y (the image is drawn
upside down in GL terms), so the bottom-up rows of `glReadPixels` come out top-down and no
flip is needed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from selfswap.errors import SelfswapError
from selfswap.face.bfm import BFM, load_bfm
from selfswap.geometry import simplify
from selfswap.geometry.mesh import Geometry, NormalEstimator

#: `glEnable` names of the four clip distances (core since OpenGL 3.0).
_GL_CLIP_DISTANCE0 = 0x3000
#: Faces per draw; a batch larger than this is drawn in chunks.
MAX_TILES = 64
#: RGBA attachments for per-vertex attributes in one draw (with the coverage and depth ones
#: within the 8 draw buffers every OpenGL 3.3 implementation has).
MAX_ATTRIBUTE_GROUPS = 4
#: Vertices of a reference tetrahedron (outer eye corners, chin, nose tip) in the 68-point
#: layout, used to tell mirrored cameras (det < 0) from direct ones.
_REFERENCE_LANDMARKS = (36, 45, 8, 30)

_VERTEX_SHADER = """
#version 330
in vec3 in_position;
#ifdef WITH_NORMALS
in vec3 in_normal;
#endif
#ifdef WITH_ATTRIBUTES
ATTRIBUTE_VERTEX_DECLARATIONS
#endif
uniform int n_vertices;
uniform ivec2 grid;           // atlas columns, rows
uniform float size;           // tile side R in pixels
uniform vec2 depth_range[MAX_TILES];  // per face: depth centre, depth half range

out vec3 v_normal;
out float v_depth;
out gl_PerVertex { vec4 gl_Position; float gl_ClipDistance[4]; };

void main() {
    int b = gl_VertexID / n_vertices;
#ifdef WITH_NORMALS
    v_normal = in_normal;
#else
    v_normal = vec3(0.0, 0.0, 1.0);
#endif
    v_depth = in_position.z;
#ifdef WITH_ATTRIBUTES
    ATTRIBUTE_VERTEX_COPIES
#endif
    vec2 ndc = (in_position.xy + 0.5) * (2.0 / size) - 1.0;
    gl_ClipDistance[0] = 1.0 - ndc.x;
    gl_ClipDistance[1] = 1.0 + ndc.x;
    gl_ClipDistance[2] = 1.0 - ndc.y;
    gl_ClipDistance[3] = 1.0 + ndc.y;
    vec2 tile = vec2(b % grid.x, b / grid.x);
    vec2 atlas = (ndc + 1.0 + 2.0 * tile) / vec2(grid) - 1.0;
    vec2 range = depth_range[b];
    gl_Position = vec4(atlas, (range.x - in_position.z) / range.y, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_normal;
in float v_depth;
layout(location = 0) out vec4 f_color;
#ifdef WITH_DEPTH
layout(location = 1) out float f_depth;
#endif
#ifdef WITH_ATTRIBUTES
ATTRIBUTE_FRAGMENT_DECLARATIONS
#endif

void main() {
#ifdef WITH_NORMALS
    float len = length(v_normal);
    f_color = vec4(len > 0.0 ? v_normal / len : vec3(0.0, 0.0, 1.0), 1.0);
#else
    f_color = vec4(1.0);
#endif
#ifdef WITH_DEPTH
    f_depth = v_depth;
#endif
#ifdef WITH_ATTRIBUTES
    ATTRIBUTE_FRAGMENT_COPIES
#endif
}
"""


class RendererError(SelfswapError):
    """No usable headless OpenGL (EGL) context."""


@dataclass
class RenderOutput:
    """What `Renderer.render` returns; arrays (or tensors) are float32 `(B, C, R, R)`."""

    silhouette: np.ndarray  # (B, 1, R, R) 0/1
    normals: np.ndarray | None = None  # (B, 3, R, R) unit inside, zero outside
    depth: np.ndarray | None = None  # (B, 1, R, R) larger = nearer, zero outside
    attributes: np.ndarray | None = None  # (B, C, R, R) interpolated, zero outside


def _with_defines(source: str, *defines: str) -> str:
    header = f"#version 330\n#define MAX_TILES {MAX_TILES}\n"
    header += "".join(f"#define {d}\n" for d in defines)
    return source.lstrip().replace("#version 330\n", header, 1)


def _with_attributes(source: str, groups: int, location: int) -> str:
    """The shader with `groups` vec4 attributes passed from vertex to fragment, written to
    the colour attachments from `location` on."""
    code = {
        "ATTRIBUTE_VERTEX_DECLARATIONS": "".join(
            f"in vec4 in_attribute{k};\nout vec4 v_attribute{k};\n" for k in range(groups)
        ),
        "ATTRIBUTE_VERTEX_COPIES": "".join(
            f"v_attribute{k} = in_attribute{k};\n" for k in range(groups)
        ),
        "ATTRIBUTE_FRAGMENT_DECLARATIONS": "".join(
            f"in vec4 v_attribute{k};\nlayout(location = {location + k}) out vec4 f_attribute{k};\n"
            for k in range(groups)
        ),
        "ATTRIBUTE_FRAGMENT_COPIES": "".join(
            f"f_attribute{k} = v_attribute{k};\n" for k in range(groups)
        ),
    }
    for name, text in code.items():
        source = source.replace(name, text)
    return source


#: The process that first created a GL context. Mesa's EGL state does not survive `fork`:
#: a forked child of that process would hang creating its own, so it gets an error instead.
_EGL_PID: int | None = None


def _create_context(device_index: int | None):
    global _EGL_PID
    if _EGL_PID is not None and os.getpid() != _EGL_PID:
        raise RendererError(
            "this process was forked from one that already used OpenGL, whose EGL state does "
            "not survive fork; create renderers only in worker processes (e.g. lazily, as "
            "Renderer does, without rendering in the parent first) or use the 'spawn' start "
            "method"
        )
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - moderngl is a dependency
        raise RendererError(f"moderngl is not installed ({exc}); run `make install`") from exc
    kwargs: dict = {"backend": "egl", "require": 330}
    if device_index is None and os.environ.get("SELFSWAP_EGL_DEVICE"):
        device_index = int(os.environ["SELFSWAP_EGL_DEVICE"])
    if device_index is not None:
        kwargs["device_index"] = device_index
    try:
        ctx = moderngl.create_standalone_context(**kwargs)
    except Exception as exc:
        raise RendererError(
            "cannot create a headless OpenGL 3.3 context through EGL "
            f"({type(exc).__name__}: {exc}). On a CPU machine install the Debian packages "
            "libegl1 and libgl1-mesa-dri (`make install` does); on a GPU machine the NVIDIA "
            "driver's EGL library must be present; set SELFSWAP_EGL_DEVICE=<index> to pick "
            "another EGL device."
        ) from exc
    _EGL_PID = os.getpid()
    return ctx


def winding_sign(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """+1 if `cross(b - a, c - a)` points to +z on average for model-space `vertices`
    `(N, 3)` (outward for a face looking down +z), else -1."""
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles)
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    return 1.0 if np.cross(b - a, c - a)[:, 2].sum() > 0 else -1.0


class Renderer:
    """Batched z-buffer renderer of BFM meshes at crop size `size` (R).

    Args:
        size: tile side R in pixels.
        detail: level of detail of the BFM mesh (`selfswap.geometry.simplify`): "auto"
            (10k triangles up to R = 160, 20k up to R = 320, the full 76k above), "full",
            or a triangle count from `simplify.LEVELS`. Ignored when `bfm` is given.
        bfm: the model whose triangles are drawn (default: the BFM at `detail`).
        device_index: EGL device to use (default: `$SELFSWAP_EGL_DEVICE` or the first).

    `mesh` is the (possibly simplified) model drawn; `render` takes vertices of that mesh
    or of the full BFM (the kept vertices are picked), `render_geometry` composes the
    simplified mesh directly, which is also faster.

    The GL context is created lazily on first use, in the process that uses it: a renderer
    made (but not used) in a parent can be handed to forked data-loader workers, each of
    which creates its own context. Once a process has used OpenGL, its forked children
    cannot (Mesa's EGL state does not survive `fork`) and get a `RendererError` saying
    so; use the 'spawn' start method there. Not thread-safe: one renderer per thread.
    """

    def __init__(
        self,
        size: int = 128,
        detail: int | str = "auto",
        bfm: BFM | None = None,
        device_index: int | None = None,
    ):
        if size < 8:
            raise ValueError(f"size must be at least 8, got {size}")
        self.size = int(size)
        self._kept: np.ndarray | None = None
        if bfm is None:
            level = _level(detail, self.size)
            if level is None:
                bfm = load_bfm()
            else:
                self._kept = simplify.lod_indices(level)[0]
                bfm = simplify.bfm_lod(level)
        self.bfm = bfm
        self._full_vertices = load_bfm().n_vertices if self._kept is not None else -1
        self.device_index = device_index
        self.n_vertices = self.bfm.n_vertices
        self._triangles = np.ascontiguousarray(self.bfm.triangles, np.int32)
        self._normals = NormalEstimator(self._triangles, self.n_vertices)
        reference = self.bfm.keypoints68[list(_REFERENCE_LANDMARKS)]
        self._reference = reference
        model_det = np.linalg.det(np.diff(self.bfm.mean[reference].astype(np.float64), axis=0))
        # outward posed normal = winding * sign(det camera) * cross; sign(det camera) =
        # sign(det posed tetrahedron) / sign(det model tetrahedron).
        self._orientation = winding_sign(self.bfm.mean, self._triangles) * np.sign(model_det)
        self._pid: int | None = None
        self._gl: dict = {}

    # -- GL state ---------------------------------------------------------------------------

    def _ensure(self) -> dict:
        if self._pid == os.getpid():
            return self._gl
        ctx = _create_context(self.device_index)
        self._gl = {
            "ctx": ctx,
            "positions": ctx.buffer(reserve=12 * self.n_vertices),
            "normals": ctx.buffer(reserve=12 * self.n_vertices),
            "attributes": ctx.buffer(reserve=16 * self.n_vertices),
            "attribute_bytes": 16 * self.n_vertices,
            "capacity": 0,
            "programs": {},
            "vaos": {},
            "fbos": {},
        }
        self._pid = os.getpid()
        return self._gl

    def _program(self, normals: bool, depth: bool, groups: int = 0):
        """The program for an output kind with `groups` vec4 attributes (compiled on first
        use)."""
        gl = self._gl
        key = (normals, depth, groups)
        if key not in gl["programs"]:
            defines = ["WITH_NORMALS"] * normals + ["WITH_DEPTH"] * depth
            defines += ["WITH_ATTRIBUTES"] * (groups > 0)
            # the attribute outputs are the colour attachments after the depth one, if any
            vertex, fragment = (
                _with_attributes(_with_defines(shader, *defines), groups, 1 + depth)
                for shader in (_VERTEX_SHADER, _FRAGMENT_SHADER)
            )
            prog = gl["ctx"].program(vertex_shader=vertex, fragment_shader=fragment)
            prog["n_vertices"].value = self.n_vertices
            prog["size"].value = float(self.size)
            gl["programs"][key] = prog
        return gl["programs"][key]

    def _vertex_array(self, batch: int, normals: bool, depth: bool, groups: int = 0):
        """Vertex array for `batch` faces; the batched index buffer is built once for a
        capacity (grown in powers of two up to `MAX_TILES`) and shared by all kinds."""
        gl = self._gl
        ctx = gl["ctx"]
        if gl["capacity"] < batch:
            capacity = min(MAX_TILES, 1 << (batch - 1).bit_length())
            offsets = np.arange(capacity, dtype=np.int64)[:, None, None] * self.n_vertices
            indices = (self._triangles[None].astype(np.int64) + offsets).astype(np.int32)
            for vao in gl["vaos"].values():
                vao.release()
            gl["vaos"] = {}
            if "index" in gl:
                gl["index"].release()
            gl["index"] = ctx.buffer(indices.tobytes())
            gl["positions"].orphan(12 * self.n_vertices * capacity)
            gl["normals"].orphan(12 * self.n_vertices * capacity)
            gl["capacity"] = capacity
        need = 16 * groups * self.n_vertices * gl["capacity"]
        if groups and gl["attribute_bytes"] < need:
            gl["attributes"].orphan(need)
            gl["attribute_bytes"] = need
        key = (normals, depth, groups)
        if key not in gl["vaos"]:
            content = [(gl["positions"], "3f", "in_position")]
            if normals:
                content.append((gl["normals"], "3f", "in_normal"))
            if groups:
                names = [f"in_attribute{k}" for k in range(groups)]
                content.append((gl["attributes"], " ".join(["4f"] * groups), *names))
            gl["vaos"][key] = ctx.vertex_array(
                self._program(normals, depth, groups),
                content,
                index_buffer=gl["index"],
                index_element_size=4,
            )
        return gl["vaos"][key]

    def _framebuffer(self, cols: int, rows: int, normals: bool, depth: bool, groups: int = 0):
        """Atlas framebuffer: RGBA32F (normal, coverage) or R32F (coverage) colour, an
        R32F depth-value attachment when asked for, `groups` RGBA32F attribute attachments,
        and a z-buffer."""
        gl = self._gl
        key = (cols, rows, normals, depth, groups)
        if key not in gl["fbos"]:
            ctx = gl["ctx"]
            shape = (cols * self.size, rows * self.size)
            colour = [ctx.renderbuffer(shape, components=4 if normals else 1, dtype="f4")]
            if depth:
                colour.append(ctx.renderbuffer(shape, components=1, dtype="f4"))
            for _ in range(groups):
                colour.append(ctx.renderbuffer(shape, components=4, dtype="f4"))
            gl["fbos"][key] = ctx.framebuffer(
                color_attachments=colour, depth_attachment=ctx.depth_renderbuffer(shape)
            )
        return gl["fbos"][key]

    @property
    def mesh(self) -> BFM:
        """The model drawn (the BFM or its level of detail)."""
        return self.bfm

    @property
    def info(self) -> dict:
        """The GL vendor, renderer and version strings of the context."""
        ctx = self._ensure()["ctx"]
        return {k: ctx.info[k] for k in ("GL_VENDOR", "GL_RENDERER", "GL_VERSION")}

    def close(self) -> None:
        """Release the GL context and everything in it."""
        if self._gl and self._pid == os.getpid():
            ctx = self._gl["ctx"]
            ctx.__enter__()  # current, so that its own objects are freed
            ctx.release()
        self._gl, self._pid = {}, None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- rendering --------------------------------------------------------------------------

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """Unit outward normals `(B, N, 3)` of posed vertices `(B, N, 3)` of `mesh`, in the
        output frame (x right, y up, z towards the viewer)."""
        normals = self._normals(vertices, normalize=True)
        tetra = vertices[:, self._reference].astype(np.float64)
        dets = np.linalg.det(tetra[:, 1:] - tetra[:, :1])
        sign = (self._orientation * np.where(dets < 0, -1.0, 1.0)).astype(np.float32)
        normals *= sign[:, None, None]
        normals[..., 1] *= -1.0
        return normals

    def _draw(
        self,
        vertices: np.ndarray,
        normals: bool,
        depth: bool,
        attributes: np.ndarray | None = None,
    ) -> tuple:
        gl = self._ensure()
        ctx = gl["ctx"]
        b, r = len(vertices), self.size
        cols = math.ceil(math.sqrt(b))
        rows = math.ceil(b / cols)
        groups = 0 if attributes is None else -(-attributes.shape[-1] // 4)
        vao = self._vertex_array(b, normals, depth, groups)
        prog = self._program(normals, depth, groups)
        fbo = self._framebuffer(cols, rows, normals, depth, groups)
        data = np.ascontiguousarray(vertices, np.float32)
        gl["positions"].write(data)
        if normals:
            gl["normals"].write(self.vertex_normals(data))
        if groups:
            padded = np.zeros((b, self.n_vertices, 4 * groups), np.float32)
            padded[..., : attributes.shape[-1]] = attributes
            gl["attributes"].write(padded)
        prog["grid"].value = (cols, rows)
        z = data[..., 2]
        zmin, zmax = z.min(axis=1), z.max(axis=1)
        ranges = np.zeros((MAX_TILES, 2), np.float32)
        ranges[:b, 0] = (zmin + zmax) / 2
        ranges[:b, 1] = np.maximum((zmax - zmin) / 2 * 1.01, 1e-3)
        ranges[b:, 1] = 1.0
        prog["depth_range"].write(ranges.tobytes())
        xy = data[..., :2]
        clip = bool(xy.min() < -0.5 or xy.max() > r - 0.5)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        ctx.depth_func = "<"
        for i in range(4):
            (ctx.enable_direct if clip else ctx.disable_direct)(_GL_CLIP_DISTANCE0 + i)
        vao.render(vertices=3 * len(self._triangles) * b)
        components = 4 if normals else 1
        color = np.empty((rows * r, cols * r, components), np.float32)
        fbo.read_into(color, components=components, attachment=0, dtype="f4")
        tiles = _tiles(color, b, r)
        depth_tiles = None
        if depth:
            raw = np.empty((rows * r, cols * r, 1), np.float32)
            fbo.read_into(raw, components=1, attachment=1, dtype="f4")
            depth_tiles = _tiles(raw, b, r)
        attribute_tiles = None
        if groups:
            raw = np.empty((groups, rows * r, cols * r, 4), np.float32)
            for k in range(groups):
                fbo.read_into(raw[k], components=4, attachment=1 + depth + k, dtype="f4")
            attribute_tiles = np.concatenate([_tiles(g, b, r) for g in raw], axis=1)
            attribute_tiles = attribute_tiles[:, : attributes.shape[-1]]
        return tiles, depth_tiles, attribute_tiles

    def render(
        self,
        vertices: np.ndarray,
        *,
        normals: bool = True,
        depth: bool = False,
        attributes: np.ndarray | None = None,
        as_tensor: bool = False,
    ) -> RenderOutput:
        """Render posed meshes.

        Args:
            vertices: `(B, N, 3)` or `(N, 3)` posed vertices in crop pixels (x right,
                y down, depth towards the viewer) of `mesh` or of the full BFM, e.g.
                `Geometry.vertices(renderer.mesh)`.
            normals: compute the normal map (else only silhouette/depth, cheaper).
            depth: also return the depth map.
            attributes: `(B, N, C)` or `(N, C)` per-vertex values (C ≤ 16, same vertices
                as `vertices`) to interpolate over the visible surface.
            as_tensor: return `torch.Tensor`s instead of numpy arrays.

        Returns:
            `RenderOutput` with `silhouette` `(B, 1, R, R)`, `normals` `(B, 3, R, R)` or
            None, `depth` `(B, 1, R, R)` or None, `attributes` `(B, C, R, R)` or None;
            B = 1 for a single `(N, 3)` mesh.
        """
        vertices = np.asarray(vertices, np.float32)
        if vertices.ndim == 2:
            vertices = vertices[None]
        if attributes is not None:
            attributes = np.asarray(attributes, np.float32)
            if attributes.ndim == 2:
                attributes = attributes[None]
            if (
                attributes.ndim != 3
                or attributes.shape[:2] != vertices.shape[:2]
                or not 1 <= attributes.shape[2] <= 4 * MAX_ATTRIBUTE_GROUPS
            ):
                raise ValueError(
                    f"attributes must be (B, N, C) with C <= {4 * MAX_ATTRIBUTE_GROUPS} for "
                    f"vertices {tuple(vertices.shape)}, got {tuple(attributes.shape)}"
                )
        if (
            vertices.ndim == 3
            and self._kept is not None
            and (vertices.shape[1] == self._full_vertices)
        ):
            vertices = vertices[:, self._kept]
            if attributes is not None:
                attributes = attributes[:, self._kept]
        if vertices.ndim != 3 or vertices.shape[1:] != (self.n_vertices, 3):
            raise ValueError(
                f"vertices must be (B, {self.n_vertices}, 3), got {tuple(vertices.shape)}"
            )
        sil, nrm, dep, att = [], [], [], []
        # Several renderers (contexts) may live in one thread: make ours current.
        with self._ensure()["ctx"]:
            for start in range(0, len(vertices), MAX_TILES):
                chunk = vertices[start : start + MAX_TILES]
                chunk_attributes = (
                    None if attributes is None else attributes[start : start + MAX_TILES]
                )
                color, depth_tiles, attribute_tiles = self._draw(
                    chunk, normals, depth, chunk_attributes
                )
                if normals:
                    sil.append(color[:, 3:4])
                    nrm.append(color[:, :3])
                else:
                    sil.append(color)
                if depth:
                    dep.append(depth_tiles)
                if attributes is not None:
                    att.append(attribute_tiles)
        r = self.size
        out = RenderOutput(
            silhouette=_cat(sil, (0, 1, r, r)),
            normals=_cat(nrm, (0, 3, r, r)) if normals else None,
            depth=_cat(dep, (0, 1, r, r)) if depth else None,
            attributes=(None if attributes is None else _cat(att, (0, attributes.shape[2], r, r))),
        )
        if as_tensor:
            import torch

            out = RenderOutput(
                *(None if a is None else torch.from_numpy(a) for a in (
                    out.silhouette, out.normals, out.depth, out.attributes
                ))
            )  # fmt: skip
        return out

    def silhouette(self, vertices: np.ndarray) -> np.ndarray:
        """Silhouettes `(B, 1, R, R)` (0/1 float32) of posed vertices `(B, N, 3)`."""
        return self.render(vertices, normals=False).silhouette

    def render_geometry(self, geometry: Geometry, **kwargs) -> RenderOutput:
        """`render` for a `Geometry` posed in crop pixels (see `Geometry.to_crop`); the
        mesh is composed at the renderer's level of detail."""
        return self.render(geometry.vertices(self.bfm), **kwargs)


def auto_triangles(size: int) -> int | None:
    """The simplified mesh's triangle count `detail="auto"` draws at size R (None: the full
    BFM)."""
    return 10000 if size <= 160 else 20000 if size <= 320 else None


def _level(detail: int | str, size: int) -> int | None:
    """The `simplify.LEVELS` entry (None: full mesh) for a `detail` setting and size R."""
    if detail == "full":
        return None
    if detail == "auto":
        return auto_triangles(size)
    if isinstance(detail, int) and detail in simplify.LEVELS:
        return detail
    raise ValueError(f"detail must be 'auto', 'full' or one of {simplify.LEVELS}, got {detail!r}")


def _tiles(atlas: np.ndarray, b: int, r: int) -> np.ndarray:
    """Cut an atlas `(rows*R, cols*R, C)` into `(b, C, R, R)` tiles, row-major."""
    rows, cols, c = atlas.shape[0] // r, atlas.shape[1] // r, atlas.shape[2]
    tiles = atlas.reshape(rows, r, cols, r, c).transpose(0, 2, 4, 1, 3)
    return np.ascontiguousarray(tiles.reshape(rows * cols, c, r, r)[:b])


def _cat(parts: list[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros(empty, np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
