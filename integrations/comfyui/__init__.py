"""continuity for ComfyUI: the blueprint library and the story memory as nodes.

Link or copy this folder into ``ComfyUI/custom_nodes/`` with ``continuity`` installed in ComfyUI's
Python. Importing the pack is cheap: no torch, LanceDB or diffusers here; the project loads when a
node first runs (and its lists of kinds and policies when ComfyUI first asks for the inputs).
"""

from __future__ import annotations

import importlib.util

from .errors import NOT_INSTALLED

# Fail at import with one line (ComfyUI prints it under "IMPORT FAILED") rather than node by node.
if importlib.util.find_spec("memstore") is None or importlib.util.find_spec("continuity") is None:
    raise ImportError(NOT_INSTALLED)

from .nodes_library import AddReferences, OpenLibrary, RegisterEntity  # noqa: E402
from .nodes_preview import AnimaticPreview  # noqa: E402
from .nodes_query import QueryBlueprints  # noqa: E402
from .nodes_story import StoryMemory, WriteBackKeyframes  # noqa: E402

_NODES = {
    "ContinuityOpenLibrary": (OpenLibrary, "Open Library"),
    "ContinuityRegisterEntity": (RegisterEntity, "Register Entity"),
    "ContinuityAddReferences": (AddReferences, "Add References"),
    "ContinuityQueryBlueprints": (QueryBlueprints, "Query Blueprints"),
    "ContinuityStoryMemory": (StoryMemory, "Story Memory"),
    "ContinuityWriteBackKeyframes": (WriteBackKeyframes, "Write Back Keyframes"),
    "ContinuityAnimaticPreview": (AnimaticPreview, "Animatic Preview"),
}

NODE_CLASS_MAPPINGS = {key: cls for key, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {key: f"{title} (continuity)" for key, (_, title) in _NODES.items()}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
