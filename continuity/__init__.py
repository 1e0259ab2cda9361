"""continuity: a memory for generative video.

The public API a user needs, in one import::

    import continuity as ct

    library = ct.open_library("./my-db", "default")
    library.register("Aria", "character", images=["aria.jpg"], description="red-haired knight")
    result = ct.Retriever(library).retrieve(ct.ShotQuery("Aria walks along the harbor"))
    run = ct.StoryRunner(library, "out/").run(ct.load_story("story.yaml"))

The layers below are packages of their own: ``memstore`` (the store), ``retrieval`` (from a shot
to blueprints), ``generators`` (adapters for diffusion backbones); this package is the application
around them (story scripts, the story loop, keyframes, metrics, report, provenance, CLI, HTTP API).
"""

from generators import GeneratorAdapter, MockGenerator, ShotSpec, get_generator, list_generators
from memstore import ContinuityError, Entity, Library, Reference, Rights, Store, open_library
from retrieval import Hit, RetrievalResult, Retriever, ShotQuery, StoryContext

from .runner import RunConfig, ShotPlan, StoryRun, StoryRunner
from .story import StoryScript, load_story

__version__ = "0.1.0"

__all__ = [
    "ContinuityError",
    "Entity",
    "GeneratorAdapter",
    "Hit",
    "Library",
    "MockGenerator",
    "Reference",
    "RetrievalResult",
    "Retriever",
    "Rights",
    "RunConfig",
    "ShotPlan",
    "ShotQuery",
    "ShotSpec",
    "Store",
    "StoryContext",
    "StoryRun",
    "StoryRunner",
    "StoryScript",
    "get_generator",
    "list_generators",
    "load_story",
    "open_library",
]
