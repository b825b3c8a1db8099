"""The inference parameter limits the pipelines accept, in one place.

Imports nothing, so the generation services (``generation.params``) check a request against the
same numbers as the pipelines without loading torch. The services may narrow a range (image
sizes, frame rate, strength) but never widen one.
"""

MIN_INFERENCE_STEPS = 1
MAX_INFERENCE_STEPS = 200
MIN_GUIDANCE_SCALE = 0.0
MAX_GUIDANCE_SCALE = 30.0
# The VAE downsamples by 8, so image sides are multiples of 8.
SIZE_MULTIPLE = 8
MIN_FRAMES = 2
# AnimateDiff motion modules embed frame positions up to their motion_max_seq_length, 32 for
# the published adapters and the tiny ones built here.
MAX_FRAMES = 32
# torch.Generator.manual_seed takes 64-bit seeds; the service stores them in a signed
# BIGINT column, so the shared range is [0, 2**63 - 1].
MAX_SEED = 2**63 - 1
