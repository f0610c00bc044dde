"""The noisy SFT caption corpus: web-style captions that state priors instead of what is visible.

Paper §3.2: low-quality captions teach models to hallucinate. Noise that is *predictable* from what
is visible (the scene type, a class's usual color) is what makes a greedy decoder over-generalize;
random noise only lowers the likelihood of every continuation evenly (see the design notes). So
each corruption fires only under its trigger condition, with the configured probability:

- object: a group of a class foreign to the scene type is named as the type's first absent
  frequent class ("a street, so that must be a bus");
- attribute / number / position: a group whose class has a typical color / count / row different
  from the truth is described with the typical value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from rlhfv_ray.scene_world.grammar import Claim, render_caption
from rlhfv_ray.scene_world.scene import Scene
from rlhfv_ray.scene_world.spec import CLASS_BY_NAME, ROWS, SCENE_TYPE_BY_NAME, NoiseRates


@dataclass(frozen=True)
class NoisyCaption:
    text: str
    claims: tuple[Claim, ...]
    noise_types: tuple[str, ...]  # the corruptions applied, one entry per corrupted group field

    @property
    def noisy(self) -> bool:
        return bool(self.noise_types)


def trigger_types(scene: Scene, claim: Claim, missing_frequent: list[str]) -> list[str]:
    """Which corruptions could fire on this (true) claim of `scene`."""
    spec = CLASS_BY_NAME[claim.cls]
    triggers = []
    if claim.cls not in SCENE_TYPE_BY_NAME[scene.scene_type].frequent and missing_frequent:
        triggers.append("object")
    if spec.typical_color and spec.typical_color != claim.color:
        triggers.append("attribute")
    if spec.typical_count and spec.typical_count != claim.count:
        triggers.append("number")
    if spec.typical_row and ROWS.index(spec.typical_row) != claim.row:
        triggers.append("position")
    return triggers


def noisy_caption(scene: Scene, rates: NoiseRates, rng: random.Random) -> NoisyCaption:
    """One caption of `scene` as the noisy web corpus would write it."""
    missing = scene.missing_frequent()
    claims: list[Claim] = []
    applied: list[str] = []
    for group in scene.groups:
        claim = Claim.of(group)
        for kind in trigger_types(scene, claim, missing):
            if rng.random() >= getattr(rates, kind):
                continue
            spec = CLASS_BY_NAME[claim.cls]
            if kind == "object":
                claim = replace(claim, cls=missing.pop(0))
                applied.append(kind)
                break  # the group is now described as another class; its own priors no longer apply
            if kind == "attribute":
                claim = replace(claim, color=spec.typical_color)
            elif kind == "number":
                claim = replace(claim, count=spec.typical_count)
            else:
                claim = replace(claim, row=ROWS.index(spec.typical_row))
            applied.append(kind)
        claims.append(claim)
    return NoisyCaption(render_caption(scene.scene_type, claims), tuple(claims), tuple(applied))
