"""The bridge between a network and the samplers: ``denoiser(x_t, t) -> (x0_hat, eps_hat)``.

A network obeys one contract, ``model(x_t, timestep, cond) -> prediction`` in its own
parameterization; samplers only ever see ``(x0_hat, eps_hat)``, so every sampler runs on every
parameterization and schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from diffstudio.core.guidance import classifier_free_guidance
from diffstudio.core.parameterization import Coefficients, Parameterization, make_target, to_x0_eps
from diffstudio.core.schedules import Schedule

Tensor = torch.Tensor
ModelFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@dataclass
class Denoiser:
    """Wraps ``model`` with its schedule, parameterization and optional guidance.

    ``cond`` (B,) are class labels; ``uncond`` the label meaning "no class" (the null class the
    model was trained with). Guidance is applied on the model's own prediction, as in diffusers."""

    model: ModelFn
    schedule: Schedule
    parameterization: Parameterization | str
    cond: Tensor | None = None
    uncond: Tensor | None = None
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    on_singular: str = "raise"

    def predict(self, x: Tensor, t: float) -> Tensor:
        """The raw (guided) prediction at a scalar time ``t``."""
        timestep = self.schedule.timestep(torch.full((x.shape[0],), float(t), dtype=torch.float64))
        timestep = timestep.to(device=x.device, dtype=torch.float32)
        if self.guidance_scale == 1.0 or self.cond is None or self.uncond is None:
            return self.model(x, timestep, self.cond)
        both = self.model(torch.cat([x, x]), torch.cat([timestep, timestep]), torch.cat([self.uncond, self.cond]))
        uncond, cond = both.chunk(2)
        return classifier_free_guidance(uncond, cond, self.guidance_scale, self.guidance_rescale)

    def __call__(self, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        c = Coefficients.at(self.schedule, t)
        return to_x0_eps(self.parameterization, self.predict(x, t), x, c, self.on_singular)


def oracle_model(x0_fn: Callable[[Tensor, Coefficients], Tensor], schedule: Schedule, param: Parameterization | str) -> ModelFn:
    """A 'perfect network' from an exact posterior mean ``x0_fn(x_t, c) = E[x0 | x_t]``,
    expressed in ``param`` — used by tests and by the app's oracle preview.

    Each sample may carry its own timestep (as in training); ``x0_fn`` then receives coefficients
    shaped ``(B, 1, ..., 1)`` so that they broadcast against ``x_t``. The output has ``x_t``'s dtype."""

    def model(x: Tensor, timestep: Tensor, cond: Tensor | None) -> Tensor:
        ts = timestep.reshape(-1).to(device="cpu", dtype=torch.float64)
        if ts.numel() == 1 or bool((ts == ts[0]).all()):
            t = schedule.time_of(ts[0])  # one time for the whole batch (sampling)
        else:
            t = schedule.time_of(ts).reshape((x.shape[0],) + (1,) * (x.dim() - 1))
        c = Coefficients.at(schedule, t)
        x64 = x.to(torch.float64)  # the exact answer, rounded once at the end
        x0 = x0_fn(x64, c).to(torch.float64)
        alpha, sigma = (v.to(device=x.device, dtype=torch.float64) for v in (c.alpha, c.sigma))
        eps = torch.where(sigma > 0, (x64 - alpha * x0) / sigma.clamp_min(1e-300), torch.zeros_like(x0))
        return make_target(param, x0, eps, c).to(x.dtype)

    return model
