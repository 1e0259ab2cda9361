"""``continuity story run`` and ``continuity demo``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .common import DbOption, LibraryOption, console, err_console, handle_errors, open_library, print_json

if TYPE_CHECKING:  # the story loop loads only when a command runs
    from rich.progress import Progress

    from ..runner import ShotRun, StoryRun

story_app = typer.Typer(help="Run story scripts shot by shot with episodic memory.", no_args_is_help=True)


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def run_hits(shot: ShotRun) -> list[str]:
    return [h.entity.name for h in shot.result.hits]


def _summary(run: StoryRun, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "story": run.story.id,
                "out": str(run.out_dir),
                "video": str(run.video) if run.video else None,
                "report": str(run.report) if run.report else None,
                "metrics": run.metrics,
                "shots": [
                    {
                        "index": s.index,
                        "video": str(s.video),
                        "skipped": s.skipped,
                        "hits": run_hits(s),
                        "memory": len(s.memory),
                        "keyframes": len(s.keyframes),
                    }
                    for s in run.shots
                ],
            }
        )
        return
    made = sum(not s.skipped for s in run.shots)
    console.print(
        f"story [bold]{run.story.title or run.story.id}[/]: {len(run.shots)} shots "
        f"({made} generated, {len(run.shots) - made} resumed)"
    )
    if run.video:
        console.print(f"video:  {run.video}")
    if run.report:
        console.print(f"report: {run.report}")


def _quiet_loaders() -> None:
    """Loading notes from diffusers/transformers ("image_encoder is not loaded...") would bury the
    summary: keep their errors only, unless the user set a verbosity in the environment; their
    loading bars show on a terminal only (a multi-GB load deserves one, a log file does not)."""
    import importlib
    import os

    for name, env in (("diffusers", "DIFFUSERS_VERBOSITY"), ("transformers", "TRANSFORMERS_VERBOSITY")):
        try:
            logs = importlib.import_module(f"{name}.utils.logging")
        except ImportError:  # an optional third-party extra; build_generator says which to install
            continue
        if env not in os.environ:
            logs.set_verbosity_error()
        if not err_console.is_terminal:
            logs.disable_progress_bar()


def _absolute(weights: str | None) -> str | None:
    """An existing local path made absolute: the same weights give the same shot hashes from any working
    folder. Anything else (a hub id, None) is kept as given."""
    if weights and Path(weights).expanduser().exists():
        return str(Path(weights).expanduser().resolve())
    return weights


@story_app.command("run")
@handle_errors
def story_run(
    script: Path = typer.Argument(
        ..., help="Story script: native YAML/JSON, ST-Bench JSON or ViStoryBench story.json."
    ),
    generator: str = typer.Option("animatic", "--generator", "-g"),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Local diffusers pipeline folder (or a hub id in "
        "the local HF cache) for prompt, ip-adapter, faceid, wan-vace, "
        "wan-m2v.",
    ),
    adapter: str | None = typer.Option(
        None, "--adapter", help="IP-Adapter / FaceID weights (folder or file); a LoRA for wan-m2v."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-O",
        help="Generator option KEY=VALUE (VALUE read as JSON when it parses), e.g. num_inference_steps=20; repeatable.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (MP4s, report.html, provenance)."),
    memory: str = typer.Option("relevant", "--memory", help="sink_recent | relevant | none"),
    budget: int = typer.Option(10, "--budget", help="Memory keyframes per shot."),
    seed: int = typer.Option(0, "--seed"),
    width: int = typer.Option(640, "--width"),
    height: int = typer.Option(360, "--height"),
    fps: int = typer.Option(12, "--fps"),
    override: list[str] = typer.Option(
        [],
        "--override-consent",
        help="Use this entity despite missing consent or expired rights (recorded in provenance).",
    ),
    require_consent: bool = typer.Option(
        False, "--require-consent", help="Refuse entities whose consent is not recorded as yes."
    ),
    shots: int | None = typer.Option(None, "--shots", help="Run only the first N shots."),
    write_back: bool = typer.Option(
        True, "--write-back/--no-write-back", help="Store each shot's keyframes as memory for later shots."
    ),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a story: retrieve, remember, generate, write keyframes back; resumable."""
    from ..generator_setup import build_generator, check_generator, parse_options
    from ..runner import RunConfig, StoryRunner
    from ..story import load_story

    options = parse_options(option)
    if model is not None:
        _quiet_loaders()
    model, adapter = _absolute(model), _absolute(adapter)
    story = load_story(script)
    check_generator(generator, model=model, adapter=adapter, options=options)  # before the store is touched
    lib = open_library(db, library, create=True)
    config = RunConfig(
        generator=generator,
        generator_options=options,
        model=model,
        adapter=adapter,
        memory_policy=memory,
        memory_budget=budget,
        seed=seed,
        width=width,
        height=height,
        fps=fps,
        consent_overrides=tuple(override),
        require_consent=require_consent,
        write_back=write_back,
    )
    adapter_instance = build_generator(generator, lib, model=model, adapter=adapter, options=options)
    with _progress() as bar:
        total = story.num_shots if shots is None else min(shots, story.num_shots)
        task = bar.add_task(f"story {story.id}", total=total)
        runner = StoryRunner(
            lib, out, config, generator=adapter_instance, progress=lambda i, n, what: bar.update(task, completed=i)
        )
        run = runner.run(story, stop_after=shots)
    _summary(run, as_json)


@handle_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Build a sample library from photos shipped in installed packages and run a short story."""
    from ..demo import run_demo

    with _progress() as bar:
        task = bar.add_task("demo story", total=None)
        run = run_demo(out, progress=lambda i, n, what: bar.update(task, completed=i, total=n))
    _summary(run, as_json)
    if not as_json:
        console.print("open the report in a browser to see the shots, the memory and the metrics")
