"""``continuity story run``, ``story plan`` (and ``story run --dry-run``) and ``continuity demo``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from memstore.errors import InvalidInputError

from .common import DbOption, LibraryOption, console, err_console, handle_errors, open_library, print_json

if TYPE_CHECKING:  # the story loop loads only when a command runs
    from rich.progress import Progress

    from memstore.library import Library

    from ..guard import GuardPolicy
    from ..plan import StoryPlan
    from ..runner import ShotRun, StoryRun
    from ..session import SessionConfig
    from ..story import StoryScript

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


def _guard_policy(value: str | None) -> GuardPolicy | None:
    from ..guard import POLICIES

    if value is not None and value not in POLICIES:
        raise InvalidInputError(f"--guard {value!r} is unknown; expected one of {', '.join(POLICIES)}")
    return cast("GuardPolicy | None", value)


def _thresholds(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, raw = pair.rpartition("=")
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"--guard-threshold must be NAME=VALUE with VALUE from 0 to 1, got {pair!r}")
        out[name.strip()] = value
    return out


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
                        "attempts": s.attempts,
                        "guard": s.verdict.to_json() if s.verdict is not None else None,
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


ScriptArgument = typer.Argument(..., help="Story script: native YAML/JSON, ST-Bench JSON or ViStoryBench story.json.")
GeneratorOption = typer.Option("animatic", "--generator", "-g")
ModelOption = typer.Option(
    None,
    "--model",
    help="Local diffusers pipeline folder (or a hub id in the local HF cache) for prompt, ip-adapter, faceid, wan-vace, "
    "wan-m2v.",
)
AdapterOption = typer.Option(
    None,
    "--adapter",
    help="IP-Adapter / FaceID weights (folder or file); for wan-m2v a LoRA: a folder with both experts or HIGH,LOW.",
)
GeneratorOptionsOption = typer.Option(
    [],
    "--option",
    "-O",
    help="Generator option KEY=VALUE (VALUE read as JSON when it parses), e.g. num_inference_steps=20; repeatable.",
)
MemoryOption = typer.Option("relevant", "--memory", help="sink_recent | relevant | none")
BudgetOption = typer.Option(10, "--budget", help="Memory keyframes per shot.")
SeedOption = typer.Option(0, "--seed")
WidthOption = typer.Option(640, "--width")
HeightOption = typer.Option(360, "--height")
FpsOption = typer.Option(12, "--fps")
OverrideOption = typer.Option(
    [],
    "--override-consent",
    help="Use this entity despite missing consent or expired rights (recorded in provenance).",
)
RequireConsentOption = typer.Option(
    False, "--require-consent", help="Refuse entities whose consent is not recorded as yes."
)
ShotsOption = typer.Option(None, "--shots", help="Only the first N shots.")


def _weights(model: str | None, adapter: str | None) -> tuple[str | None, str | None]:
    return _absolute(model), _absolute(adapter)


def _print_problems(problems: list[str]) -> None:
    """Every pre-flight problem, one line each, on stderr."""
    from rich.markup import escape

    for problem in problems:
        err_console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)


def _plan_and_check(story: StoryScript, lib: Library, config: SessionConfig, shots: int | None) -> StoryPlan:
    """The story's plan, or exit 1 after printing every pre-flight problem (nothing is written)."""
    from ..plan import plan_story
    from ..preflight import preflight

    plan = plan_story(story, lib, config, stop_after=shots)
    problems = preflight(story, lib, config, plan=plan)
    if problems:
        _print_problems(problems)
        err_console.print(
            f"[bold red]error:[/] {len(problems)} problem(s) in story {story.id!r}; nothing was rendered",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    return plan


def _print_plan(plan: StoryPlan, as_json: bool) -> None:
    from rich.markup import escape

    if as_json:
        print_json(plan.to_json())
        return
    console.print(f"story [bold]{escape(plan.story.title or plan.story.id)}[/]: {len(plan.shots)} shot(s) planned")
    for shot in plan.shots:
        status = "resume" if plan.would_resume(shot) else "render"
        console.print(
            f"[bold]shot {shot.index}[/] (scene {shot.scene_index}, shot {shot.shot.index}) "
            f"{'cut' if shot.shot.cut else 'continues'}, {status}, input {shot.input_hash[:12]}",
            highlight=False,
        )
        console.print(f"  prompt: {escape(shot.shot.prompt)}", highlight=False, soft_wrap=True)
        for hit in shot.result.hits:
            refs = ", ".join(f"{r.id[:8]} ({r.era}, {r.source})" for r in hit.references) or "no references"
            console.print(
                f"  {escape(hit.name)} ({hit.kind}, {hit.score:.3f}): {escape('; '.join(hit.reasons))} [{refs}]",
                highlight=False,
                soft_wrap=True,
            )
        if not shot.result.hits:
            console.print("  nothing retrieved", highlight=False)
        for frame, why in shot.memory:
            console.print(f"  memory: shot {frame.shot} frame {frame.frame}: {escape(why)}", highlight=False)
        for note in shot.result.notes:
            console.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)


@story_app.command("plan")
@handle_errors
def story_plan(
    script: Path = ScriptArgument,
    generator: str = GeneratorOption,
    model: str | None = ModelOption,
    adapter: str | None = AdapterOption,
    option: list[str] = GeneratorOptionsOption,
    memory: str = MemoryOption,
    budget: int = BudgetOption,
    seed: int = SeedOption,
    width: int = WidthOption,
    height: int = HeightOption,
    fps: int = FpsOption,
    override: list[str] = OverrideOption,
    require_consent: bool = RequireConsentOption,
    shots: int | None = ShotsOption,
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The whole story's plan shot by shot (hits with reasons, memory, input hash) after a pre-flight
    that lists every problem (unknown names, refused consent, missing weights or images); renders and
    writes nothing."""
    from ..generator_setup import parse_options
    from ..session import SessionConfig
    from ..story import load_story

    model, adapter = _weights(model, adapter)
    story = load_story(script)
    config = SessionConfig(
        generator=generator,
        generator_options=parse_options(option),
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
    )
    lib = open_library(db, library)  # a plan reads an existing store and creates none
    _print_plan(_plan_and_check(story, lib, config, shots), as_json)


@story_app.command("run")
@handle_errors
def story_run(
    script: Path = ScriptArgument,
    generator: str = GeneratorOption,
    model: str | None = ModelOption,
    adapter: str | None = AdapterOption,
    option: list[str] = GeneratorOptionsOption,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (MP4s, report.html, provenance); required unless --dry-run."
    ),
    memory: str = MemoryOption,
    budget: int = BudgetOption,
    seed: int = SeedOption,
    width: int = WidthOption,
    height: int = HeightOption,
    fps: int = FpsOption,
    override: list[str] = OverrideOption,
    require_consent: bool = RequireConsentOption,
    shots: int | None = ShotsOption,
    guard: str | None = typer.Option(
        None,
        "--guard",
        help="off | warn | retry | strict (default: retry with a face or CLIP embedder, else warn).",
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Generations per shot under --guard retry/strict."),
    guard_threshold: list[str] = typer.Option(
        [], "--guard-threshold", help="NAME=VALUE: the guard's threshold for one entity (repeatable)."
    ),
    write_back: bool = typer.Option(
        True, "--write-back/--no-write-back", help="Store each shot's keyframes as memory for later shots."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and the pre-flight's problems (as story plan); render nothing."
    ),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a story: retrieve, remember, generate, write keyframes back; resumable."""
    from ..generator_setup import build_generator, check_generator, parse_options
    from ..runner import RunConfig, StoryRunner
    from ..story import load_story

    if out is None and not dry_run:
        raise InvalidInputError("--out is missing; give the output folder (--out DIR), or use --dry-run")
    options = parse_options(option)
    if model is not None and not dry_run:
        _quiet_loaders()
    model, adapter = _weights(model, adapter)
    story = load_story(script)
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
        guard=_guard_policy(guard),
        max_attempts=max_attempts,
        guard_thresholds=_thresholds(guard_threshold),
    )
    if dry_run:
        lib = open_library(db, library)
        _print_plan(_plan_and_check(story, lib, config, shots), as_json)
        return
    assert out is not None  # checked above
    check_generator(generator, model=model, adapter=adapter, options=options)  # before the store is touched
    lib = open_library(db, library, create=True)
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
