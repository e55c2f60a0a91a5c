"""For each registry model, a typical request (the sample request on its Segmind page,
prompt shortened) and one wrong value with the parameter it is wrong for. Shared by the
registry, simulator and SDK tests."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {
    "luma-photon-txt-2-img": {"aspect_ratio": "16:9"},
    "flux-schnell": {"steps": 4, "seed": 123456789, "sampler_name": "euler",
                     "scheduler": "normal", "samples": 1, "width": 1024, "height": 1024,
                     "denoise": 1},
    "flux-dev": {"samples": 1, "guidance": 3.5, "steps": 25, "prompt_strength": 0.8,
                 "aspect_ratio": "1:1", "seed": 46588, "output_format": "webp",
                 "output_quality": 80},
    "sdxl1.0-txt2img": {"negative_prompt": "ugly, tiling", "style": "base", "samples": 1,
                        "scheduler": "UniPC", "num_inference_steps": 25, "guidance_scale": 8,
                        "strength": 0.2, "high_noise_fraction": 0.8, "seed": 468685,
                        "img_width": 896, "img_height": 1152, "refiner": True,
                        "base64": False},
    "ssd-1b": {"negative_prompt": "blurry,out of focus", "samples": 1,
               "scheduler": "DPM Multi", "num_inference_steps": 45, "guidance_scale": 7,
               "seed": 9876543210, "img_width": 1024, "img_height": 1024, "base64": False},
    "segmind-vega-rt-v1": {"num_inference_steps": 4, "seed": 758143278, "img_width": 1024,
                           "img_height": 1024, "base64": False},
    "ideogram-2a-txt-2-img": {"magic_prompt_option": "AUTO",
                              "resolution": "RESOLUTION_1024_1024", "seed": 56698,
                              "style_type": "GENERAL"},
}

#: slug → (parameter, a value its page does not allow)
WRONG: dict[str, tuple[str, Any]] = {
    "luma-photon-txt-2-img": ("aspect_ratio", "4:3"),
    "flux-schnell": ("steps", 9),
    "flux-dev": ("output_format", "gif"),
    "sdxl1.0-txt2img": ("samples", 5),
    "ssd-1b": ("img_width", 512),
    "segmind-vega-rt-v1": ("num_inference_steps", 3),
    "ideogram-2a-txt-2-img": ("magic_prompt_option", "MAYBE"),
}

#: the registry models that can answer with several images
MULTI = ("flux-schnell", "flux-dev", "sdxl1.0-txt2img", "ssd-1b")
