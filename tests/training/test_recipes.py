"""The Django-free recipes on CPU with the tiny models: a few steps each, outputs that load and
generate, Style Tailoring's timestep split, exact resume, and exact argument errors."""

import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from generation.pipelines import generate_animations, generate_stickers, load_pipeline
from tests.factories import disc
from training_bridge.recipes import (
    DatasetSpec,
    SpecError,
    TrainingSpec,
    check_spec,
    list_checkpoints,
    train,
)
from training_bridge.recipes.composition import Composition, RoleSampler

FAST = {"max_train_steps": 3, "train_batch_size": 2, "validation_samples": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(tiny_models_root, tmp_path, recipe, model, datasets, **params) -> TrainingSpec:
    return TrainingSpec(
        recipe=recipe,
        base_model=str(tiny_models_root / model),
        datasets=[DatasetSpec(role=role, path=str(path)) for role, path in datasets],
        output_dir=str(tmp_path / "out"),
        params={**FAST, **params},
        device="cpu",
    )


def _events(sink):
    return lambda event, fields: sink.append((event, fields))


def test_finetune_lora_writes_a_diffusers_model_with_a_card_that_generates(
    tiny_models_root, tmp_path, exports
):
    events = []
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "finetune",
        "sticker-base",
        [("train", exports["alignment"])],
        method="lora",
        checkpointing_steps=2,
    )
    # when
    result = train(spec, on_event=_events(events))
    # then: progress per step, one checkpoint, a done event
    assert [e for e, _ in events] == [
        "start",
        "progress",
        "progress",
        "checkpoint",
        "progress",
        "done",
    ]
    progress = [f for e, f in events if e == "progress"]
    assert [(f["step"], f["total"], list(f["loss"])) for f in progress] == [
        (1, 3, ["train"]),
        (2, 3, ["train"]),
        (3, 3, ["train"]),
    ]
    assert all(f["seconds_per_step"] > 0 for f in progress)
    assert result.steps == 3 and result.resumed_from_step is None
    out = Path(result.output_dir)
    # Checkpoints are removed once the model is saved; the LoRA adapter is kept beside it.
    assert list_checkpoints(out) == []
    assert (out / "unet_lora" / "pytorch_lora_weights.safetensors").is_file()
    summary = json.loads((out / "training_summary.json").read_text())
    dataset_json = json.loads((exports["alignment"] / "dataset.json").read_text())
    assert summary["datasets"] == [
        {
            "role": "train",
            "path": str(exports["alignment"]),
            "dataset_version_id": 1,
            "purpose": "alignment",
            "kind": "image",
            "manifest_sha256": dataset_json["manifest_sha256"],
            "entries": 6,
            "validation_entries": 2,
        }
    ]
    assert summary["params"]["method"] == "lora" and summary["params"]["max_train_steps"] == 3
    assert set(summary["metrics"]["validation_loss"]) == {"train"}
    card = (out / "README.md").read_text()
    assert "Recipe: **finetune**" in card
    assert dataset_json["manifest_sha256"] in card
    assert "| learning_rate | `0.0001` |" in card
    # The merged model loads as a plain pipeline and generates RGBA stickers.
    loaded = load_pipeline(str(out), kind="image", device="cpu", dtype=torch.float32)
    [image] = generate_stickers(
        loaded,
        prompts=["a disc"],
        seeds=[1],
        num_inference_steps=2,
        guidance_scale=2.0,
        width=64,
        height=64,
    )
    assert (image.image.mode, image.image.size, image.alpha_source) == ("RGBA", (64, 64), "model")
    # LoRA changed the UNet: the merged weights differ from the base model's.
    base = load_file(str(Path(spec.base_model) / "unet" / "diffusion_pytorch_model.safetensors"))
    trained = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(base) == set(trained)
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and all("attn" in k for k in changed)


def test_style_tailoring_draws_content_at_or_above_the_split_and_style_below(
    tiny_models_root, tmp_path, exports
):
    events = []
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "style_tailoring",
        "sticker-base",
        [("content", exports["alignment"]), ("style", exports["style"])],
        timestep_split=700,
        content_ratio=0.5,
        train_batch_size=4,
        max_train_steps=4,
        checkpointing_steps=100,
    )
    result = train(spec, on_event=_events(events))
    content, style = result.sampled_timesteps["content"], result.sampled_timesteps["style"]
    # then: half of every batch of 4 from each role, on its side of the split
    assert len(content) == len(style) == 8
    assert all(700 <= t < 1000 for t in content)
    assert all(0 <= t < 700 for t in style)
    # The same timesteps are in the run's log, step by step.
    log = [
        json.loads(line) for line in (Path(result.output_dir) / "logs" / "timesteps.jsonl").open()
    ]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert [t for row in log for t in row["timesteps"]["content"]] == content
    assert [t for row in log for t in row["timesteps"]["style"]] == style
    # Loss is reported per role at every step.
    assert all(set(f["loss"]) == {"content", "style"} for e, f in events if e == "progress")
    assert result.metrics["samples_seen"] == {"content": 8, "style": 8}
    assert set(result.metrics["validation_loss"]) == {"content", "style"}


def test_style_tailoring_mix_is_exact_over_any_run_length():
    composition = Composition(
        "style_tailoring",
        {"train_batch_size": 3, "content_ratio": 0.3, "timestep_split": 400},
        num_train_timesteps=1000,
        roles=["content", "style"],
        micro_per_step=1,
    )
    counts = {"content": 0, "style": 0}
    for micro in range(100):
        parts = composition.parts(micro)
        assert sum(p.count for p in parts) == 3
        for part in parts:
            # Positions continue where the previous micro-batch stopped.
            assert part.start == counts[part.role]
            counts[part.role] += part.count
            assert (part.low, part.high) == ((400, 1000) if part.role == "content" else (0, 400))
    assert counts == {"content": 90, "style": 210}
    assert composition.positions_until(100) == counts


def test_role_sampler_visits_every_entry_once_per_epoch_and_jumps_anywhere():
    sampler = RoleSampler(5, seed=3, salt=0)
    first, second = sampler.take(0, 5), sampler.take(5, 5)
    assert sorted(first) == sorted(second) == [0, 1, 2, 3, 4]
    assert first != second
    assert RoleSampler(5, seed=3, salt=0).take(7, 4) == (first + second)[7:] + sampler.take(10, 1)


def test_sequential_trains_on_first_then_second(tiny_models_root, tmp_path, exports):
    events = []
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "sequential",
        "sticker-base",
        [("first", exports["alignment"]), ("second", exports["style"])],
        max_train_steps=4,
        first_stage_steps=1,
        method="lora",
        checkpointing_steps=100,
    )
    result = train(spec, on_event=_events(events))
    roles = [list(f["loss"]) for e, f in events if e == "progress"]
    assert roles == [["first"], ["second"], ["second"], ["second"]]
    assert result.metrics["samples_seen"] == {"first": 2, "second": 6}


def test_distill_student_counts_teachers_and_its_output_animates(
    tiny_models_root, tmp_path, exports
):
    events = []
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "distill_student",
        "anim-student",
        [("teacher_selection", exports["teacher_selection"])],
        num_frames=4,
        inference_steps=3,
        max_train_steps=2,
        checkpointing_steps=100,
    )
    result = train(spec, on_event=_events(events))
    assert result.teacher_counts == {"anim-teacher-a": 3, "anim-teacher-b": 3}
    assert events[0][1]["teacher_counts"] == {"anim-teacher-a": 3, "anim-teacher-b": 3}
    assert result.metrics["teacher_samples_seen"] == {"anim-teacher-a": 2, "anim-teacher-b": 2}
    summary = json.loads((Path(result.output_dir) / "training_summary.json").read_text())
    assert summary["default_params"] == {"num_inference_steps": 3, "num_frames": 4}
    assert summary["params"]["method"] == "motion"
    # Only the motion modules learned.
    base = load_file(str(Path(spec.base_model) / "unet" / "diffusion_pytorch_model.safetensors"))
    trained = load_file(
        str(Path(result.output_dir) / "unet" / "diffusion_pytorch_model.safetensors")
    )
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed and all("motion_modules" in k for k in changed)
    # The student's folder loads as an animation pipeline and animates a sticker in 4 frames.
    loaded = load_pipeline(result.output_dir, kind="animation", device="cpu", dtype=torch.float32)
    [animation] = generate_animations(
        loaded,
        source_images=[disc(0)],
        prompts=["slides right"],
        seeds=[2],
        num_frames=4,
        num_inference_steps=3,
        guidance_scale=2.0,
        width=64,
        height=64,
    )
    assert len(animation.frames) == 4 and animation.frames[0].mode == "RGBA"


def test_a_crashed_run_resumes_from_its_checkpoint_exactly(tiny_models_root, tmp_path, exports):
    params = {"max_train_steps": 4, "checkpointing_steps": 2, "method": "lora"}
    datasets = [("content", exports["alignment"]), ("style", exports["style"])]
    straight = train(
        _spec(
            tiny_models_root, tmp_path / "a", "style_tailoring", "sticker-base", datasets, **params
        )
    )
    crashed = _spec(
        tiny_models_root, tmp_path / "b", "style_tailoring", "sticker-base", datasets, **params
    )

    def crash_after_checkpoint(event, fields):
        if event == "checkpoint":
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train(crashed, on_event=crash_after_checkpoint)
    assert [step for step, _ in list_checkpoints(crashed.output_dir)] == [2]
    # when
    events = []
    resumed = train(crashed, resume_from_checkpoint="latest", on_event=_events(events))
    # then: it continued at step 3 and ended where the uninterrupted run ended, bit for bit
    assert events[0][1]["step"] == 2 and events[0][1]["resumed_from"] == 2
    assert [f["step"] for e, f in events if e == "progress"] == [3, 4]
    assert (resumed.steps, resumed.resumed_from_step) == (4, 2)
    assert resumed.final_loss == straight.final_loss
    a = load_file(str(Path(straight.output_dir) / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(Path(resumed.output_dir) / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [
        json.loads(line)["step"]
        for line in (Path(resumed.output_dir) / "logs" / "timesteps.jsonl").open()
    ]
    assert log == [1, 2, 3, 4]
    # A finished run asked to resume again returns its output without training.
    again = train(crashed, resume_from_checkpoint="latest")
    assert (again.steps, again.metrics["final_loss"]) == (4, resumed.final_loss)


def test_a_checkpoint_of_another_run_is_refused(tiny_models_root, tmp_path, exports):
    datasets = [("train", exports["alignment"])]
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "finetune",
        "sticker-base",
        datasets,
        method="lora",
        checkpointing_steps=1,
        keep_checkpoints=True,
        max_train_steps=2,
    )
    train(spec)
    (Path(spec.output_dir) / "training_summary.json").unlink()
    other = _spec(
        tiny_models_root,
        tmp_path,
        "finetune",
        "sticker-base",
        datasets,
        method="lora",
        checkpointing_steps=1,
        max_train_steps=2,
        learning_rate=1e-3,
    )
    assert [step for step, _ in list_checkpoints(spec.output_dir)] == [1]
    with pytest.raises(SpecError) as error:
        train(other, resume_from_checkpoint="latest")
    assert error.value.field == "resume_from_checkpoint"
    assert str(error.value).startswith(
        f"Checkpoint {Path(spec.output_dir) / 'checkpoint-1'} was made by a different run"
    )


@pytest.mark.parametrize(
    ("recipe", "model", "datasets", "params", "field", "message"),
    [
        (
            "style_tailoring",
            "sticker-base",
            [("content", "alignment"), ("style", "style")],
            {"timestep_split": 1000},
            "params.timestep_split",
            "`timestep_split` has to be an integer in [0, 1000) but is 1000.",
        ),
        (
            "style_tailoring",
            "sticker-base",
            [("content", "alignment"), ("style", "style")],
            {"timestep_split": -1},
            "params.timestep_split",
            "`timestep_split` has to be an integer in [0, 1000) but is -1.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "alignment")],
            {"learning_rate": 0.5},
            "params.learning_rate",
            "`learning_rate` has to be a number in (0, 0.01] but is 0.5.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "alignment")],
            {"max_train_steps": 0},
            "params.max_train_steps",
            "`max_train_steps` has to be an integer in [1, 1000000] but is 0.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "alignment")],
            {"timestep_split": 5},
            "params.timestep_split",
            "`timestep_split` only applies to the style_tailoring recipe.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "alignment")],
            {"warmup": 5},
            "params.warmup",
            "Unknown parameter(s): warmup.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "alignment")],
            {"method": "motion"},
            "params.method",
            "`method` 'motion' needs an animation model.",
        ),
        (
            "style_tailoring",
            "sticker-base",
            [("content", "alignment"), ("train", "style")],
            {},
            "datasets",
            "The style_tailoring recipe takes one dataset per role content, style but got "
            "content, train.",
        ),
        (
            "style_tailoring",
            "sticker-base",
            [("content", "style"), ("style", "alignment")],
            {},
            "datasets",
            "Dataset {style} has purpose style, which the role content does not "
            "take (it takes alignment, weak, motion).",
        ),
        (
            "distill_student",
            "anim-student",
            [("teacher_selection", "alignment")],
            {},
            "datasets",
            "Dataset {alignment} has purpose alignment, which the role teacher_selection does not "
            "take (it takes teacher_selection).",
        ),
        (
            "finetune",
            "anim-student",
            [("train", "alignment")],
            {},
            "datasets",
            "Dataset {alignment} holds image entries but the base model is an animation model.",
        ),
        (
            "distill_student",
            "sticker-base",
            [("teacher_selection", "teacher_selection")],
            {},
            "base_model",
            "The distill_student recipe trains animation models, not image models.",
        ),
        (
            "finetune",
            "sticker-base",
            [("train", "evaluation")],
            {},
            "datasets",
            "Dataset {evaluation} has purpose evaluation, which the role train does not take (it "
            "takes alignment, style, motion, teacher_selection, weak).",
        ),
    ],
)
def test_bad_arguments_fail_up_front_with_exact_messages(
    tiny_models_root, tmp_path, exports, recipe, model, datasets, params, field, message
):
    spec = _spec(
        tiny_models_root,
        tmp_path,
        recipe,
        model,
        [(role, exports[name]) for role, name in datasets],
        **params,
    )
    with pytest.raises(SpecError) as error:
        check_spec(spec)
    assert error.value.field == field
    assert str(error.value) == message.format(**exports)
    assert not Path(spec.output_dir).exists()


def test_a_missing_base_model_is_named(tiny_models_root, tmp_path, exports):
    spec = _spec(
        tiny_models_root, tmp_path, "finetune", "nowhere", [("train", exports["alignment"])]
    )
    with pytest.raises(SpecError) as error:
        check_spec(spec)
    assert (error.value.field, str(error.value)) == (
        "base_model",
        f"The base model folder {tiny_models_root / 'nowhere'} does not exist.",
    )


def test_the_recipes_never_import_django():
    folder = Path(__file__).resolve().parents[2] / "training_bridge" / "recipes"
    imported = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] in ("django", "rest_framework")}
    assert not {name for name in imported if name.startswith("training_bridge.jobs")}


def _with_prediction(tiny_models_root, tmp_path, prediction_type: str) -> Path:
    import shutil

    folder = tmp_path / f"base-{prediction_type}"
    shutil.copytree(tiny_models_root / "sticker-base", folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["prediction_type"] = prediction_type
    config_path.write_text(json.dumps(config))
    return folder


def test_a_v_prediction_base_trains_on_the_velocity(tiny_models_root, tmp_path, exports):
    base = _with_prediction(tiny_models_root, tmp_path, "v_prediction")
    spec = _spec(
        tiny_models_root,
        tmp_path,
        "finetune",
        "sticker-base",
        [("train", exports["alignment"])],
        method="lora",
        max_train_steps=1,
    )
    spec.base_model = str(base)
    result = train(spec)
    summary = json.loads((Path(result.output_dir) / "training_summary.json").read_text())
    assert summary["prediction_type"] == "v_prediction"
    assert result.steps == 1 and result.final_loss["train"] > 0
    saved = json.loads(
        (Path(result.output_dir) / "scheduler" / "scheduler_config.json").read_text()
    )
    assert saved["prediction_type"] == "v_prediction"


def test_a_base_that_predicts_samples_is_refused(tiny_models_root, tmp_path, exports):
    from training_bridge.recipes import Trainer

    spec = _spec(
        tiny_models_root, tmp_path, "finetune", "sticker-base", [("train", exports["alignment"])]
    )
    spec.base_model = str(_with_prediction(tiny_models_root, tmp_path, "sample"))
    with pytest.raises(SpecError) as error:
        Trainer(spec)
    assert str(error.value) == (
        "The base model's scheduler predicts 'sample'; the recipes train "
        "epsilon or v_prediction models."
    )


def test_the_command_line_takes_flags_and_fails_bad_arguments_with_exit_status_2(
    tiny_models_root, tmp_path, exports, capsys
):
    from training_bridge.recipes.train import build_parser, main, spec_from_args

    args = build_parser().parse_args(
        [
            "--recipe",
            "style_tailoring",
            "--base-model",
            str(tiny_models_root / "sticker-base"),
            "--dataset",
            f"content={exports['alignment']}",
            "--dataset",
            f"style={exports['style']}",
            "--output-dir",
            str(tmp_path / "out"),
            "--timestep-split",
            "600",
            "--content-ratio",
            "0.25",
            "--keep-checkpoints",
            "true",
        ]
    )
    spec = spec_from_args(args)
    assert [(d.role, d.path) for d in spec.datasets] == [
        ("content", str(exports["alignment"])),
        ("style", str(exports["style"])),
    ]
    assert spec.params == {"timestep_split": 600, "content_ratio": 0.25, "keep_checkpoints": True}
    # when: the same run with a split beyond the schedule
    status = main(
        [
            *sum(
                (
                    ["--" + k, v]
                    for k, v in [
                        ("recipe", "style_tailoring"),
                        ("base-model", str(tiny_models_root / "sticker-base")),
                        ("dataset", f"content={exports['alignment']}"),
                        ("dataset", f"style={exports['style']}"),
                        ("output-dir", str(tmp_path / "out")),
                        ("timestep-split", "1000"),
                    ]
                ),
                [],
            )
        ]
    )
    # then
    assert status == 2
    [line] = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert (event["event"], event["type"], event["field"], event["message"]) == (
        "error",
        "SpecError",
        "params.timestep_split",
        "`timestep_split` has to be an integer in [0, 1000) but is 1000.",
    )
    assert not (tmp_path / "out").exists()


def test_launch_commands_for_accelerate_and_torchrun():
    from training_bridge.recipes.launch import render_launch_command

    assert render_launch_command("/jobs/job 7/spec.json", tool="torchrun", num_processes=8) == (
        "torchrun --standalone --nproc_per_node 8 -m training_bridge.recipes.train "
        "--spec '/jobs/job 7/spec.json' --resume-from-checkpoint latest"
    )
    assert render_launch_command("s.json", num_processes=2, mixed_precision="bf16") == (
        "accelerate launch --num_processes 2 --num_machines 1 --mixed_precision bf16 "
        "--dynamo_backend no -m training_bridge.recipes.train --spec s.json "
        "--resume-from-checkpoint latest"
    )
    with pytest.raises(ValueError, match=r"`num_processes` has to be an integer in \[1, 64\]"):
        render_launch_command("s.json", num_processes=0)
