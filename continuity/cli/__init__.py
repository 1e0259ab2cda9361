"""``continuity``: the command line (see DESIGN.md for the surface).

This module only assembles: each command group lives in its own module (``store``, ``embed``,
``query``, ``story``, ``serve``) and is imported plainly, so a missing or broken one fails loudly
instead of silently dropping its commands. The table below is the whole command surface, in the
order ``continuity --help`` lists it.
"""

from __future__ import annotations

import typer

from . import embed, generators, images, ingest, keys, provenance, query, serve, store, story, verify

app = typer.Typer(
    name="continuity",
    help="A memory for generative video: register blueprints, retrieve them per shot, keep stories consistent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMANDS = {
    "init": store.init,
    "register": store.register,
    "add-image": store.add_image,
    "list": store.list_entities,
    "show": store.show,
    "rename": store.rename,
    "remove": store.remove,
    "export": store.export_library,
    "import": store.import_library,
    "import-folder": store.import_folder,
    "ingest": ingest.ingest,
    "export-images": images.export_images,
    "libraries": store.libraries,
    "embedders": embed.embedders,
    "configure": embed.configure,
    "reindex": embed.reindex,
    "query": query.query,
    "generators": generators.generators,
    "demo": story.demo,
    "serve": serve.serve,
    "verify": verify.verify,
    "audit": provenance.audit,
}

for _name, _command in COMMANDS.items():
    app.command(_name)(_command)
app.add_typer(story.story_app, name="story")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(provenance.consent_app, name="consent")


def main() -> None:
    app()


__all__ = ["app", "main"]
