"""Views of point clouds: camera poses, z-buffer point splatting, colour histograms, view grids."""

from .cameras import look_at, project, random_poses, sphere_poses
from .grid import save_view_grid
from .histogram import color_histogram
from .splat import RenderOutput, estimate_normals, render_points

__all__ = [
    "RenderOutput",
    "color_histogram",
    "estimate_normals",
    "look_at",
    "project",
    "random_poses",
    "render_points",
    "save_view_grid",
    "sphere_poses",
]
