"""The frozen image teacher (any timm model) and the embedding cache built with it.

timm is imported only when a teacher is loaded; if torchvision is missing, a minimal stand-in serves that import
only (crossjepa.teacher.torchvision_stub).
"""

from .cache import CacheCorruptError, TeacherCache, build_cache, open_cache, verify_cache
from .model import DEFAULT_TEACHER, POOLINGS, Teacher, load_teacher
from .views import RenderedViews

__all__ = [
    "DEFAULT_TEACHER",
    "POOLINGS",
    "CacheCorruptError",
    "RenderedViews",
    "Teacher",
    "TeacherCache",
    "build_cache",
    "load_teacher",
    "open_cache",
    "verify_cache",
]
