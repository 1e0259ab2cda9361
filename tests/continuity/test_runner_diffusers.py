"""The story loop on real diffusers backbones loaded from local folders (tiny random weights).

What a user does with real weights, shrunk: `continuity story run --generator ip-adapter --model
SD_FOLDER --adapter IP_ADAPTER_FOLDER`, and wan-m2v (StoryMem memory-to-video) from a saved Wan I2V
folder. The pictures are noise; what is proven is the wiring: weights load from disk, the token
cache encodes each reference once across shots and runs, memory keyframes reach the next shot.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from continuity.cli import app
from continuity.provenance import read_provenance
from continuity.video import probe

pytest.importorskip("diffusers")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

cli = CliRunner()
SIZE = ["--width", "64", "--height", "64", "--fps", "4"]
STEPS = ["--option", "num_inference_steps=2"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny SD 1.5-shaped pipeline and an IP-Adapter (with its CLIP image encoder) saved the way
    released weights are laid out: a diffusers folder, and an adapter folder with image_encoder/."""
    import torch

    from generators.testing import (
        save_adapter,
        tiny_clip_image_encoder,
        tiny_ip_adapter_state_dict,
        tiny_sd_pipeline,
    )

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("weights")
    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(root / "sd15")
    save_adapter(tiny_ip_adapter_state_dict(pipe.unet), root / "ip-adapter")
    model, processor = tiny_clip_image_encoder()
    model.save_pretrained(root / "ip-adapter" / "image_encoder")
    processor.save_pretrained(root / "ip-adapter" / "image_encoder")
    return {"model": (root / "sd15").resolve(), "adapter": (root / "ip-adapter").resolve()}


def write_story(folder, photos, prompts):
    """A native script with two characters (real photos) and one location, images beside it."""
    from PIL import Image

    from continuity.drawn import harbor_at_dusk

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photos["astronaut"]).save(folder / "aria.png")
    Image.fromarray(photos["chelsea"]).save(folder / "bram.png")
    harbor_at_dusk((160, 96)).save(folder / "harbor.png")
    script = {
        "id": "ip-story",
        "title": "IP-Adapter story",
        "cast": [
            {"name": "Aria", "kind": "character", "images": ["aria.png"], "description": "an astronaut"},
            {"name": "Bram", "kind": "character", "images": ["bram.png"], "description": "a ginger cat"},
            {"name": "Harbor", "kind": "location", "images": ["harbor.png"], "description": "a harbor at dusk"},
        ],
        "scenes": [
            {
                "index": 1,
                "location": "Harbor",
                "shots": [{"index": i + 1, "prompt": p, "cut": True, "duration": 0.5} for i, p in enumerate(prompts)],
            }
        ],
    }
    path = folder / "story.yaml"
    path.write_text(yaml.safe_dump(script))
    return path


@pytest.fixture
def encode_calls(monkeypatch):
    """Counts images through the real HFImageEncoder.encode (the real encoder still runs)."""
    from generators.ip_adapter import HFImageEncoder

    calls: list[int] = []
    original = HFImageEncoder.encode

    def counting(self, images):
        calls.append(len(images))
        return original(self, images)

    monkeypatch.setattr(HFImageEncoder, "encode", counting)
    return calls


def token_rows(db):
    from memstore.store import Store

    store = Store.open(str(db))
    return store.tokens.search().select(["reference_id", "spec", "created"]).limit(None).to_list()


@pytest.mark.slow
def test_ip_adapter_story_from_local_weights(weights, photos, tmp_path, encode_calls):
    prompts = [
        "Aria walks along the Harbor pier.",
        "Bram sleeps on a crate at the Harbor.",
        "Aria and Bram watch the boats at the Harbor.",
    ]
    script = write_story(tmp_path / "script", photos, prompts)
    db, out = tmp_path / "db", tmp_path / "out"
    args = [
        "story",
        "run",
        str(script),
        "--out",
        str(out),
        "--db",
        str(db),
        "--generator",
        "ip-adapter",
        "--model",
        str(weights["model"]),
        "--adapter",
        str(weights["adapter"]),
        *STEPS,
        *SIZE,
        "--json",
    ]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [s["skipped"] for s in summary["shots"]] == [False, False, False]
    assert probe(out / "story.mp4")["frames"] == 3 * 2  # 0.5 s at 4 fps per shot

    # one token row per conditioned reference, under the encoder's spec; shot 3 reused both
    from memstore.store import Store

    lib = Store.open(str(db)).library("default")
    registered = {
        lib.get(name).id: lib.references(lib.get(name), source="registered", with_vectors=False)[0].id
        for name in ("Aria", "Bram")
    }
    rows = token_rows(db)
    spec = f"hf-clip-vision:{weights['adapter'] / 'image_encoder'}:image_embeds"
    assert {r["spec"] for r in rows} == {spec}
    assert sorted(r["reference_id"] for r in rows) == sorted(registered.values())
    assert sum(encode_calls) == 2, encode_calls  # Aria in shot 1, Bram in shot 2, nothing in shot 3

    manifests = [read_provenance(out / "shots" / f"shot_{i:03d}.provenance.json") for i in range(3)]
    assert all(m.model_id == str(weights["model"]) and m.generator == "ip-adapter" for m in manifests)
    harvested = lib.references(source="harvested", story="ip-story", with_vectors=False)
    # written back under the shot's cast (later near-duplicate frames of the same entity are dropped)
    assert 0 in {r.shot for r in harvested} and {r.shot for r in harvested} <= {0, 1, 2}
    assert sum(s["keyframes"] for s in summary["shots"]) == len(harvested)
    names = {lib.get(n).id: n for n in ("Aria", "Bram", "Harbor")}
    assert {names[r.entity_id] for r in harvested if r.shot == 0} == {"Aria", "Harbor"}

    # a later shot changes: shots 1-2 resume, shot 3 is generated again by a fresh process-level
    # generator, and its references come from the store's token cache, not the encoder
    encode_calls.clear()
    before = {(r["reference_id"], r["created"]) for r in rows}
    script = write_story(tmp_path / "script", photos, prompts[:2] + ["Aria and Bram leave the Harbor at night."])
    again = json.loads(cli.invoke(app, args).stdout)
    assert [s["skipped"] for s in again["shots"]] == [True, True, False]
    assert encode_calls == []
    assert {(r["reference_id"], r["created"]) for r in token_rows(db)} == before
    assert probe(out / "story.mp4")["frames"] == 3 * 2


def test_other_weights_make_other_shots(library, photos, tmp_path):
    """The weights enter each shot's hash: a run with other --model/--adapter does not resume the
    shots of a run with other weights, and the same weights do."""
    from continuity.runner import RunConfig, StoryRunner
    from continuity.story import parse_story
    from generators.animatic import AnimaticGenerator

    library.register("Aria", "character", images=[photos["astronaut"]])
    story = parse_story(
        {"id": "w", "scenes": [{"index": 1, "shots": [{"index": 1, "prompt": "Aria waves.", "duration": 0.5}]}]}
    )

    def skipped(**weights):
        config = RunConfig(width=64, height=48, fps=4, **weights)
        run = StoryRunner(library, tmp_path / "out", config, generator=AnimaticGenerator()).run(story)
        return [s.skipped for s in run.shots]

    assert skipped() == [False]
    assert skipped() == [True]
    assert skipped(model="/weights/a") == [False]
    assert skipped(model="/weights/a") == [True]
    assert skipped(model="/weights/a", adapter="/weights/ip") == [False]
    assert skipped() == [False]


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A tiny Wan2.2-style image-to-video pipeline saved as a diffusers folder."""
    import torch

    from generators.testing import tiny_wan_i2v_pipeline

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("weights") / "wan-i2v"
    tiny_wan_i2v_pipeline().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_wan_m2v_story_gets_memory_from_earlier_shots(wan_folder, photos, tmp_path):
    """wan-m2v from a saved Wan I2V folder, built by the runner from RunConfig(model=...): shot 2
    and 3 are conditioned on keyframes harvested from earlier shots, and every shot has the
    requested frame count."""
    import torch

    from continuity.runner import RunConfig, StoryRunner
    from continuity.story import parse_story
    from memstore.store import Store

    torch.set_num_threads(2)
    lib = Store.init(tmp_path / "db").library("default")
    lib.register("Aria", "character", images=[photos["astronaut"]], description="an astronaut")
    lib.register("Harbor", "location", images=[photos["coffee"]], description="a harbor")
    story = parse_story(
        {
            "id": "m2v",
            "scenes": [
                {
                    "index": 1,
                    "location": "Harbor",
                    "shots": [
                        {"index": i + 1, "prompt": p, "cut": i == 0, "duration": 1.25}
                        for i, p in enumerate(
                            ["Aria at the Harbor.", "Aria looks at the sea.", "Aria walks away from the Harbor."]
                        )
                    ],
                }
            ],
        }
    )
    config = RunConfig(
        generator="wan-m2v",
        model=str(wan_folder),
        width=32,
        height=32,
        fps=4,
        memory_policy="sink_recent",
        memory_budget=3,
        generator_options={"num_inference_steps": 2, "guidance_scale": 1.0},
    )
    runner = StoryRunner(lib, tmp_path / "out", config)
    generator = runner._generator()  # built from the folder; watch what each shot hands the pipeline
    seen: list[tuple[list[str], int]] = []
    real_generate = generator.generate

    def watched(shot, conditioning, seed=None):
        output = real_generate(shot, conditioning, seed)
        seen.append((list(conditioning.memory_ids), output.metadata["memory_frames"]))
        return output

    generator.generate = watched
    run = runner.run(story)

    assert type(generator.pipeline).__name__ == "WanMemoryToVideoPipeline"
    assert [s.num_frames for s in run.shots] == [5, 5, 5]  # 1.25 s at 4 fps
    assert probe(run.video)["frames"] == 15
    first = {k.id for k in run.shots[0].keyframes}
    assert first, "shot 1 must write keyframes back"
    assert seen[0] == ([], 0)
    for memory_ids, frames in seen[1:]:
        assert frames == len(memory_ids) > 0
        assert set(memory_ids) & first  # shot 1's keyframes are in the memory of every later shot
    manifest = read_provenance(run.shots[2].provenance)
    assert manifest.model_id == str(wan_folder) and {m.shot for m in manifest.memory} >= {0}


def test_wan_m2v_adapter_is_a_lora(wan_folder, library, tmp_path):
    """For wan-m2v, --adapter is a LoRA file (StoryMem ships LoRAs), loaded at --option lora_scale."""
    pytest.importorskip("peft")
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from continuity.generator_setup import build_generator
    from generators.testing import tiny_wan_transformer

    transformer = tiny_wan_transformer(36)
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k"], init_lora_weights=False))
    WanImageToVideoPipeline.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    lora_file = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    gen = build_generator(
        "wan-m2v",
        library,
        model=str(wan_folder),
        adapter=str(lora_file),
        options={"lora_scale": 0.5, "num_inference_steps": 1},
    )
    assert gen.pipeline.get_list_adapters() == {"transformer": ["storymem"]}
    scalings = {m.scaling["storymem"] for m in gen.pipeline.transformer.modules() if hasattr(m, "scaling")}
    assert scalings == {0.5}  # lora_alpha / r * lora_scale
    assert gen.num_inference_steps == 1 and gen.model_id == str(wan_folder)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--generator", "ip-adapter"], "needs diffusers weights: got no --model"),
        (["--generator", "ip-adapter", "--model", "{model}"], "needs adapter weights: got no --adapter"),
        (["--generator", "ip-adapter", "--model", "{model}", "--adapter", "{missing}"], "does not exist"),
        (["--generator", "ip-adapter", "--model", "{missing}", "--adapter", "{adapter}"], "--model"),
        (["--generator", "animatic", "--model", "{model}"], "takes no --model"),
        (
            ["--generator", "ip-adapter", "--model", "{model}", "--adapter", "{adapter}", "--option", "stepz=2"],
            "has no option 'stepz'",
        ),
        (["--generator", "ip-adapter", "--model", "{model}", "--adapter", "{adapter}", "--option", "2"], "KEY=VALUE"),
        (["--generator", "wan-vace", "--model", "{model}", "--adapter", "{adapter}"], "takes no --adapter"),
        (["--generator", "prompt", "--model", "{model}", "--option", "dtype=float8"], "dtype must be one of"),
    ],
)
def test_bad_weights_fail_in_one_line_before_the_store_exists(tmp_path, photos, extra, message):
    model, adapter = tmp_path / "sd", tmp_path / "ipa"
    model.mkdir()
    adapter.mkdir()
    script = write_story(tmp_path / "script", photos, ["Aria at the Harbor."])
    fill = {"model": str(model), "adapter": str(adapter), "missing": str(tmp_path / "nowhere")}
    args = [
        "story",
        "run",
        str(script),
        "--out",
        str(tmp_path / "out"),
        "--db",
        str(tmp_path / "db"),
        *[a.format(**fill) for a in extra],
    ]
    result = cli.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "db").exists() and not (tmp_path / "out").exists()


def test_missing_image_encoder_names_where_it_looked(weights, tmp_path):
    """An adapter folder without image_encoder/ (and no image_encoder option) is a MissingWeightsError."""
    from continuity.generator_setup import build_generator
    from generators.testing import save_adapter, tiny_ip_adapter_state_dict, tiny_sd_pipeline
    from memstore.errors import MissingWeightsError
    from memstore.store import Store

    bare = tmp_path / "bare-adapter"
    save_adapter(tiny_ip_adapter_state_dict(tiny_sd_pipeline().unet), bare)
    lib = Store.init(tmp_path / "db").library("default")
    with pytest.raises(MissingWeightsError, match="image_encoder"):
        build_generator("ip-adapter", lib, model=str(weights["model"]), adapter=str(bare))
    # the option points at the encoder elsewhere
    gen = build_generator(
        "ip-adapter",
        lib,
        model=str(weights["model"]),
        adapter=str(bare / "ip-adapter.safetensors"),
        options={"image_encoder": str(weights["adapter"] / "image_encoder"), "num_inference_steps": 1},
    )
    assert gen.token_cache is not None and gen.encoder.spec.endswith("image_encoder:image_embeds")


def test_device_and_dtype_options_place_pipeline_and_encoder(weights, library):
    """--option device=... dtype=...: the pipeline and the image encoder (which runs outside it)
    move together, and a shot still renders; a device that does not exist is one clear error."""
    import torch

    from continuity.generator_setup import build_generator
    from generators import ShotSpec
    from generators.testing import sample_result
    from memstore.errors import InvalidInputError

    gen = build_generator(
        "ip-adapter",
        library,
        model=str(weights["model"]),
        adapter=str(weights["adapter"]),
        options={"device": "cpu", "dtype": "float64", "num_inference_steps": 1},
    )
    assert gen.pipeline.unet.dtype == torch.float64 and gen.pipeline.vae.dtype == torch.float64
    assert next(gen.encoder.model.parameters()).dtype == torch.float64
    gen.token_cache = None  # sample_result's references are not in the library
    out = gen.run(ShotSpec("Aria and Bram", num_frames=2, width=32, height=32), sample_result(), 0)
    assert out.frames.shape == (2, 32, 32, 3)
    with pytest.raises(InvalidInputError, match="cannot place ip-adapter on device 'no-such-device'"):
        build_generator(
            "ip-adapter",
            library,
            model=str(weights["model"]),
            adapter=str(weights["adapter"]),
            options={"device": "no-such-device"},
        )


def test_parse_options_reads_json_else_strings():
    from continuity.generator_setup import parse_options

    got = parse_options(
        [
            "num_inference_steps=2",
            "scale=0.5",
            'scales={"Aria": 0.8}',
            "layer=penultimate",
            "use_masks=false",
            "weight_name=ip-adapter_sd15.bin",
            "prompt=a=b",
        ]
    )
    assert got == {
        "num_inference_steps": 2,
        "scale": 0.5,
        "scales": {"Aria": 0.8},
        "layer": "penultimate",
        "use_masks": False,
        "weight_name": "ip-adapter_sd15.bin",
        "prompt": "a=b",
    }
