"""The service's parameter ranges come from the pipelines' limits: a request the service accepts
is one the pipelines accept."""

import pytest
from django.core.exceptions import ValidationError

from generation.params import validate_params


def test_the_pipelines_upper_limits_are_accepted():
    params = validate_params(
        {"num_inference_steps": 200, "guidance_scale": 30, "num_frames": 32},
        kind="animation",
        defaults={},
    )

    assert params.as_dict() == {
        "num_inference_steps": 200,
        "guidance_scale": 30.0,
        "width": 64,
        "height": 64,
        "negative_prompt": "",
        "num_frames": 32,
        "fps": 8,
        "strength": 0.8,
        "motion_prompt": "",
    }


def test_values_past_the_pipelines_limits_are_refused():
    with pytest.raises(ValidationError) as excinfo:
        validate_params(
            {"num_inference_steps": 201, "num_frames": 1, "width": 68},
            kind="animation",
            defaults={},
        )

    assert excinfo.value.message_dict == {
        "params.num_inference_steps": ["Must be between 1 and 200, not 201."],
        "params.num_frames": ["Must be between 2 and 32, not 1."],
        "params.width": ["Must be divisible by 8, not 68."],
    }
