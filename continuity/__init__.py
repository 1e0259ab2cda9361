"""continuity: the application around the store: story scripts, the story loop (StoryRunner),
keyframes, consistency metrics, the HTML report, provenance, the CLI and the HTTP API."""

__version__ = "0.1.0"
